"""Which group protocol a member speaks, as the broker reports it (describe_consumer_groups)."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable

import httpx2
import pytest
from confluent_kafka import ConsumerGroupType

from consumer.sandbox.server import SandboxServer
from consumer.tools.warehouse.simulator import seed_sandbox, simulate
from tests.integration.group_harness import Group, wait_until

pytestmark = pytest.mark.kafka
SANDBOX_LATENCY_MS = 0

PARTITIONS = 4


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


def _assigned(group: Group) -> bool:
    """The newest member process logged assignments that add up to every partition."""
    log = group.logs / f"member-{len(group.members) - 1}.log"
    got: set[int] = set()
    for line in log.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if isinstance(entry, dict) and entry.get("event") == "partitions_assigned":
                got.update(entry["partitions"])
    return got == set(range(PARTITIONS))


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
    with httpx2.Client(timeout=30) as client:
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


@pytest.mark.parametrize("protocol", ["consumer", "classic"])
def test_a_static_member_killed_without_leaving_gets_its_partitions_back_under_its_id(
    protocol: str, sandbox: SandboxServer, make_group: Callable[..., Group]
) -> None:
    """Like a StatefulSet pod after an OOM kill: the same instance id comes straight back.

    Classic hands the id to the newcomer at once. The consumer protocol refuses the id while its
    killed holder is still in the group (UNRELEASED_INSTANCE_ID, fatal in librdkafka: the member
    exits); restarted as Kubernetes would, it owns the partitions once the broker's session
    timeout (6 s on the local broker) released its predecessor.
    """
    group = make_group(PARTITIONS, sandbox.url, KAFKA_GROUP_PROTOCOL=protocol)
    instance = {"KAFKA_GROUP_INSTANCE_ID": "fulfillment-consumer-0"}
    first = group.start_member(**instance)
    wait_until(lambda: _joined(group, 1), 60, "the static member owns every partition")
    group.kill(first)
    killed_at = time.monotonic()
    refused = 0
    replacement = group.start_member(**instance)
    deadline = killed_at + 60
    while not (replacement.poll() is None and _assigned(group) and _joined(group, 1)):
        assert time.monotonic() < deadline, "the static member never got its partitions back"
        if replacement.poll() is not None:  # refused: restart it, as a pod would be
            refused += 1
            replacement = group.start_member(**instance)
        time.sleep(0.5)
    back_after = time.monotonic() - killed_at
    print(f"{protocol}: static member back after {back_after:.1f}s, {refused} refused starts")  # noqa: T201 - a figure worth seeing
    (described,) = group.describe().members
    assert described.group_instance_id == "fulfillment-consumer-0"
    assert group.stop(replacement) == 0
