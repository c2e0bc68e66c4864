"""The committer times commits and remembers only those the coordinator accepted.

A fake source stands in for Kafka: what is timed and remembered is ours, the commit itself is
proven against the broker by tests/integration (test_consumer_group.py, test_fencing.py).
"""

from __future__ import annotations

from collections.abc import Mapping

from structlog.testing import capture_logs

from consumer.config.settings import Secret, Settings
from consumer.core.dispatch_log import DispatchLog
from consumer.core.errors import InfrastructureError
from consumer.core.lanes import CoalescingPolicy
from consumer.member.commits import Committer
from consumer.member.holdings import EngineStats, Holdings, State
from tests.event_builders import shipment

INTERVAL = 5.0


class FakeSource:
    def __init__(self, refuse: bool = False) -> None:
        self.refuse = refuse
        self.commits: list[dict[int, int]] = []

    def commit(
        self, offsets: Mapping[int, int], *, metadata: Mapping[int, str] | None = None, sync: bool
    ) -> None:
        if self.refuse:
            raise InfrastructureError("ILLEGAL_GENERATION")
        self.commits.append(dict(offsets))


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def settings() -> Settings:
    return Settings(
        bootstrap_servers="127.0.0.1:1",
        topic="t",
        group_id="g",
        dlq_topic="t.dlq",
        parking_topic="t.parked",
        dr_api_url="http://127.0.0.1:1",
        dr_api_key=Secret("sk_test_x"),
        dr_rate_limit=25,
        dr_api_version=None,
        dr_timeout=1.0,
        schema_registry=None,
        max_in_flight=16,
        max_buffered_per_partition=100,
        commit_interval=INTERVAL,
        drain_timeout=1.0,
        health_port=0,
        log_format="json",
        dlq_max_ratio=0.5,
    )


def member(source: FakeSource, clock: Clock) -> tuple[Committer, Holdings, EngineStats]:
    held, stats = Holdings(), EngineStats()
    committer = Committer(
        settings(),
        source,  # type: ignore[arg-type]
        held,
        stats,
        clock=clock,
        wall_clock_ms=lambda: 1_700_000_000_000,
    )
    return committer, held, stats


def fed(held: Holdings, orders: list[str]) -> State:
    ps = State(0, CoalescingPolicy(10), 0, DispatchLog(0))
    for offset, order in enumerate(orders):
        ps.watermark.track(offset)
        ps.lanes.add(offset, shipment(f"e{offset}", order))
    held.partitions[0] = ps
    return ps


def test_settled_offsets_are_committed_once_per_interval() -> None:
    source, clock = FakeSource(), Clock()
    committer, held, stats = member(source, clock)
    ps = fed(held, ["a", "b"])
    ps.settle(0)
    first = committer.plan()
    assert first.commits[0][0] == 1
    assert committer.commit_now(first.commits, "running")
    committer.confirm(first)
    ps.settle(1)
    assert committer.plan().commits == {}, "committed again within the interval"
    clock.now += INTERVAL
    assert committer.plan().commits[0][0] == 2
    assert stats.commits == 1


def test_proposed_batches_are_committed_without_waiting_for_the_interval() -> None:
    source, clock = FakeSource(), Clock()
    committer, held, _ = member(source, clock)
    ps = fed(held, ["a"])
    committer.plan()  # the periodic pass of this interval
    ps.proposed += ps.lanes.next_batches(clock.now, 1)
    planned = committer.plan()
    assert list(planned.commits) == [0]
    assert [batch for _, batch in committer.confirm(planned)] == planned.covered[0][1]


def test_a_refused_commit_is_not_remembered_and_says_so() -> None:
    source, clock = FakeSource(refuse=True), Clock()
    committer, held, stats = member(source, clock)
    ps = fed(held, ["a"])
    ps.settle(0)
    planned = committer.plan()
    with capture_logs() as logs:
        assert not committer.commit_now(planned.commits, "revoke")
    assert [e["event"] for e in logs] == ["offset_commit_failed"]
    assert ps.last_committed == 0
    assert stats.commits == 0


def test_a_commit_on_revoke_is_logged_with_its_offsets() -> None:
    source, clock = FakeSource(), Clock()
    committer, held, _ = member(source, clock)
    ps = fed(held, ["a"])
    ps.settle(0)
    with capture_logs() as logs:
        assert committer.commit_now(committer.final([ps]), "revoke")
    assert source.commits == [{0: 1}]
    assert logs[0]["event"] == "offsets_committed_on_revoke"
    assert logs[0]["offsets"] == {0: 1}


def test_after_the_lease_lapsed_every_owned_partition_is_committed_where_it_stands() -> None:
    source, clock = FakeSource(), Clock()
    committer, held, _ = member(source, clock)
    ps = fed(held, ["a"])
    committer.confirm(committer.plan())  # nothing changed since: no periodic commit
    clock.now += 0.1
    assert committer.plan().commits == {}
    proof = committer.with_proof(committer.plan())
    assert proof.commits[0][0] == ps.commit_offset()
