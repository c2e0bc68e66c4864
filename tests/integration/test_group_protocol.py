"""Which group protocol a member speaks, as the broker reports it (describe_consumer_groups)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest
from confluent_kafka import ConsumerGroupType

from consumer.sandbox.config import SandboxConfig
from consumer.sandbox.server import SandboxServer
from consumer.warehouse.simulator import seed_sandbox, simulate
from tests.integration.group_harness import Group, wait_until

pytestmark = pytest.mark.kafka

PARTITIONS = 4


@pytest.fixture
def sandbox() -> Iterator[SandboxServer]:
    with SandboxServer(SandboxConfig(strict_orders=True)) as server:
        yield server


def _shares(group: Group) -> list[int]:
    """How many partitions of the topic each member owns, fewest first."""
    return sorted(
        len([tp for tp in m.assignment.topic_partitions if tp.topic == group.topic])
        for m in group.describe().members
    )


def _joined(group: Group, members: int) -> bool:
    """`members` members own every partition, evenly."""
    return _shares(group) == [PARTITIONS // members] * members and group.owned_partitions() == set(
        range(PARTITIONS)
    )


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, ConsumerGroupType.CONSUMER),
        ({"KAFKA_GROUP_PROTOCOL": "classic"}, ConsumerGroupType.CLASSIC),
    ],
    ids=["default", "classic"],
)
def test_members_join_a_group_of_the_chosen_protocol_share_it_and_finish_the_topic(
    env: dict[str, str],
    expected: ConsumerGroupType,
    sandbox: SandboxServer,
    make_group: Callable[..., Group],
) -> None:
    group = make_group(PARTITIONS, sandbox.url, **env)
    sim = simulate(40, seed=81)
    with httpx.Client(timeout=30) as client:
        seed_sandbox(sandbox.url, sim, client)
    group.publish(sim)
    group.start_member()
    wait_until(lambda: _joined(group, 1), 60, "the first member owns every partition")
    assert group.describe().type == expected

    group.start_member()  # an incremental rebalance hands the newcomer its share
    wait_until(lambda: _joined(group, 2), 60, "two members share every partition evenly")
    wait_until(group.all_committed, 90, "every record committed")
    assert group.describe().type == expected
    assert group.stop_all() == [0, 0]
    assert f'"group_protocol": "{expected.name.lower()}"' in group.log_text()


@pytest.mark.parametrize("protocol", ["consumer", "classic"])
def test_a_static_member_is_known_to_the_broker_by_its_instance_id(
    protocol: str, sandbox: SandboxServer, make_group: Callable[..., Group]
) -> None:
    group = make_group(PARTITIONS, sandbox.url, KAFKA_GROUP_PROTOCOL=protocol)
    member = group.start_member(KAFKA_GROUP_INSTANCE_ID="fulfillment-consumer-0")
    wait_until(lambda: _joined(group, 1), 60, "the static member owns every partition")
    (described,) = group.describe().members
    assert described.group_instance_id == "fulfillment-consumer-0"
    assert group.stop(member) == 0
