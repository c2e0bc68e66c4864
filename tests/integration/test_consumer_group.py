"""The consumer's promises about Kafka, against the real broker and the sandbox on loopback."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import httpx2
import pytest
from confluent_kafka.admin import AdminClient

from consumer.sandbox.config import FaultSettings, SandboxConfig
from consumer.sandbox.server import SandboxServer
from consumer.tools.demo import reconcile
from consumer.tools.warehouse.simulator import seed_sandbox, simulate
from tests.integration.group_harness import Group, wait_until

pytestmark = pytest.mark.kafka


def _sandbox(latency_ms: float, port: int = 0) -> SandboxServer:
    return SandboxServer(
        SandboxConfig(strict_orders=True, faults=FaultSettings(latency_ms=latency_ms)), port=port
    )


@pytest.fixture
def sandbox() -> Iterator[SandboxServer]:
    with _sandbox(latency_ms=30) as server:
        yield server


def test_every_event_reaches_digital_river_once_in_order_per_order_and_coalesced(
    sandbox: SandboxServer, make_group: Callable[..., Group]
) -> None:
    group = make_group(6, sandbox.url)
    sim = simulate(300, seed=11)
    with httpx2.Client(timeout=30) as client:
        seed_sandbox(sandbox.url, sim, client)
    published = group.publish(sim)
    group.start_member()
    group.start_member()
    wait_until(group.all_committed, 120, "every record committed")
    assert group.stop_all() == [0, 0]

    result = reconcile(sandbox.url, sim)
    assert result.mismatches == []
    assert result.orders_matching == 300
    assert result.duplicate_events == 0
    assert result.order_violations == 0
    assert result.events_posted == published
    assert result.posts < published, "pending events of an order should share a POST"


def test_a_killed_members_records_are_redone_by_the_member_taking_over_without_double_capture(
    make_group: Callable[..., Group],
) -> None:
    with _sandbox(latency_ms=150) as sandbox:
        group = make_group(4, sandbox.url, MAX_IN_FLIGHT_ORDERS="32")
        sim = simulate(400, seed=12)
        with httpx2.Client(timeout=30) as client:
            seed_sandbox(sandbox.url, sim, client)
        published = group.publish(sim)
        victim = group.start_member()
        survivor = group.start_member()
        wait_until(lambda: group.committed_total() > published // 5, 90, "some progress")
        group.kill(victim)
        wait_until(group.all_committed, 180, "the survivor finishes every record")
        assert group.stop(survivor) == 0

        result = reconcile(sandbox.url, sim)
    assert result.mismatches == []
    assert result.duplicate_events == 0, "a record the killed member posted was posted again"
    assert result.order_violations == 0
    assert "events_already_applied" in group.log_text() or "partitions_assigned" in group.log_text()


def test_committed_offsets_do_not_move_while_digital_river_is_down_and_catch_up_when_it_is_back(
    make_group: Callable[..., Group],
) -> None:
    down = _sandbox(latency_ms=0)  # bound to a port now, not serving yet: connections are refused
    port = down.port
    down.stop()
    url = f"http://127.0.0.1:{port}"
    group = make_group(3, url)
    sim = simulate(40, seed=13)
    group.publish(sim)
    group.start_member()
    wait_until(
        lambda: "fulfillment_retry_scheduled" in group.log_text(), 60, "the member tries and fails"
    )
    before = group.committed()
    for _ in range(12):  # six seconds of retrying: the committed offsets must stay where they were
        committed = group.committed()
        assert all(committed[p] <= max(before[p], 0) for p in committed), committed
        time.sleep(0.5)
    assert group.committed_total() == 0

    with _sandbox(latency_ms=0, port=port) as sandbox:
        with httpx2.Client(timeout=30) as client:
            seed_sandbox(sandbox.url, sim, client)
        wait_until(group.all_committed, 120, "catch-up once Digital River is back")
        assert group.stop_all() == [0]
        result = reconcile(sandbox.url, sim)
    assert result.mismatches == []
    assert result.duplicate_events == 0


def test_three_members_split_twelve_partitions_and_one_leaving_loses_nothing(
    make_group: Callable[..., Group],
) -> None:
    with _sandbox(latency_ms=60) as sandbox:
        group = make_group(12, sandbox.url)
        sim = simulate(600, seed=14)
        with httpx2.Client(timeout=30) as client:
            seed_sandbox(sandbox.url, sim, client)
        published = group.publish(sim)
        members = [group.start_member() for _ in range(3)]
        wait_until(lambda: _assignment_sizes(group) == [4, 4, 4], 60, "12 partitions split 4/4/4")
        wait_until(lambda: group.committed_total() > published // 10, 90, "some progress")
        assert group.stop(members[0]) == 0
        wait_until(group.all_committed, 180, "the remaining two finish every record")
        assert [group.stop(m) for m in members[1:]] == [0, 0]
        result = reconcile(sandbox.url, sim)
    assert result.mismatches == []
    assert result.duplicate_events == 0
    assert result.order_violations == 0


def test_shutdown_commits_what_is_settled(
    sandbox: SandboxServer, make_group: Callable[..., Group]
) -> None:
    # periodic commits effectively off: only the shutdown commit can move the offsets to the end
    group = make_group(2, sandbox.url, COMMIT_INTERVAL_SECONDS="3600")
    sim = simulate(60, seed=15)
    with httpx2.Client(timeout=30) as client:
        seed_sandbox(sandbox.url, sim, client)
    published = group.publish(sim)
    member = group.start_member()
    wait_until(lambda: reconcile(sandbox.url, sim).events_posted == published, 60, "all applied")
    assert not group.all_committed()
    assert group.stop(member) == 0
    assert group.all_committed()


def _assignment_sizes(group: Group) -> list[int]:
    admin = AdminClient({"bootstrap.servers": group.bootstrap})
    description = admin.describe_consumer_groups([group.group])[group.group].result(timeout=10)
    return sorted(len(m.assignment.topic_partitions) for m in description.members)
