"""Chaos: a consumer group under kill -9 and an unreliable Digital River still ends exact.

Three members consume while the warehouse keeps publishing; a seeded RNG SIGKILLs a random
member and starts a replacement, round after round; the sandbox answers 5xx, times out, applies
then fails and rate-limits. At the end the ledger equals what was published (PRODUCT.md
guarantees 3-7): nothing lost, nothing captured twice, per-order order kept, every poison record
dead-lettered with its reason, committed offsets at the end of the topic.

The figures of a run (events, faults, kills, 429s, reconciliation reads per 1,000 events) are
printed and written to `chaos-figures.json` in the test's `tmp_path`.
"""

from __future__ import annotations

import json
import random
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2
import pytest

from consumer.core.fulfillments import event_ids_of
from consumer.sandbox.config import FaultSettings, SandboxConfig
from consumer.sandbox.server import SandboxServer
from consumer.tools.demo import reconcile
from consumer.tools.warehouse.simulator import Simulation, seed_sandbox, simulate
from tests.event_builders import shipment
from tests.integration.group_harness import Group, wait_until
from tests.integration.records import (
    OutgoingRecord,
    Placed,
    admin_get,
    produce,
    read_topic,
    sandbox_requests,
    valid_record,
)

pytestmark = pytest.mark.kafka

SEED = 4077
ORDERS = 400
PARTITIONS = 12
WAVES = 4
CHAOS_ROUNDS = 5
SANDBOX_RATE_LIMIT = 20.0  # requests/s the sandbox lets through
GROUP_RATE_LIMIT = "60"  # what the members believe they may send: 429s follow
FAULTS = FaultSettings(
    latency_ms=20,
    error_rate=0.05,
    timeout_rate=0.01,
    timeout_hold_s=3.0,  # longer than the members' DR_TIMEOUT_SECONDS
    apply_then_fail_rate=0.05,
    rate_limit=SANDBOX_RATE_LIMIT,
    seed=SEED,
)
MEMBER_ENV = {
    "DR_RATE_LIMIT": GROUP_RATE_LIMIT,
    "DR_TIMEOUT_SECONDS": "1",
    "MAX_IN_FLIGHT_ORDERS": "16",
}
FINISH_TIMEOUT_S = 240


def _poison(sim: Simulation, rng: random.Random) -> list[tuple[str, OutgoingRecord]]:
    """Bad records of three kinds, twice each: (expected `fc.error.class`, record)."""
    trace = (("trace-id", b"chaos"),)
    bad: list[tuple[str, OutgoingRecord]] = []
    for n in range(2):
        victim = rng.choice(sim.events)
        body = valid_record(victim).value[10:]
        bad += [
            (
                "undecodable",
                OutgoingRecord(f"ord_garbage_{n}".encode(), rng.randbytes(24), trace),
            ),
            (
                "key_mismatch",
                OutgoingRecord(
                    f"ord_someone_else_{n}".encode(),
                    valid_record(
                        shipment(str(uuid.UUID(int=rng.getrandbits(128))), victim.order_id)
                    ).value,
                    trace,
                ),
            ),
            (
                "unknown_schema",
                OutgoingRecord(
                    victim.order_id.encode(), b"\xc3\x01" + rng.randbytes(8) + body, trace
                ),
            ),
        ]
    return bad


def _waves(
    sim: Simulation, poison: list[tuple[str, OutgoingRecord]], rng: random.Random
) -> list[list[OutgoingRecord]]:
    """The simulation's events in publish order, cut into waves, poison mixed in at random."""
    records = [valid_record(e) for e in sim.events]
    for _, bad in poison:
        records.insert(rng.randrange(len(records) + 1), bad)
    size = -(-len(records) // WAVES)
    return [records[i : i + size] for i in range(0, len(records), size)]


def _engine_reads(logs: Path) -> int:
    """`reads` the members reported: each member's last `member_stopped`/`member_progress`
    line (a killed member's last progress line undercounts what it did after it)."""
    total = 0
    for log in sorted(logs.glob("member-*.log")):
        last = 0
        for line in log.read_text(errors="replace").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and entry.get("event") in (
                "member_stopped",
                "member_progress",
            ):
                last = int(entry.get("reads", last))
        total += last
    return total


def _route_total(stats: dict[str, Any], route: str) -> int:
    return sum(int(n) for n in stats["byRoute"].get(route, {}).values())


def test_chaos_kills_and_faults_end_with_the_ledger_exactly_equal_to_what_was_published(
    make_group: Callable[..., Group], tmp_path: Path
) -> None:
    rng = random.Random(SEED)
    sim = simulate(ORDERS, seed=SEED)
    poison = _poison(sim, rng)
    waves = _waves(sim, poison, rng)
    started = time.monotonic()
    placed: list[tuple[OutgoingRecord, Placed]] = []
    backlog_at_kills: list[int] = []  # records published but not yet committed, per kill
    config = SandboxConfig(strict_orders=True, faults=FAULTS)
    with SandboxServer(config) as sandbox:
        with httpx2.Client(timeout=30) as client:
            seed_sandbox(sandbox.url, sim, client)
        group = make_group(PARTITIONS, sandbox.url, **MEMBER_ENV)

        def publish(wave: list[OutgoingRecord]) -> None:
            placed.extend(zip(wave, produce(group.bootstrap, group.topic, wave), strict=True))

        publish(waves[0])
        live: list[subprocess.Popen[bytes]] = [group.start_member() for _ in range(3)]
        for round_ in range(CHAOS_ROUNDS):
            time.sleep(rng.uniform(3.0, 6.0))  # chaos pacing: events flow between the blows
            if round_ + 1 < len(waves):
                publish(waves[round_ + 1])
            backlog_at_kills.append(len(placed) - group.committed_total())
            group.kill(live.pop(rng.randrange(len(live))))
            time.sleep(rng.uniform(0.5, 3.0))  # pacing: the group runs one member short
            live.append(group.start_member())
        for wave in waves[CHAOS_ROUNDS + 1 :]:
            publish(wave)

        wait_until(group.all_committed, FINISH_TIMEOUT_S, "every record committed after the chaos")
        exit_codes = [group.stop(member) for member in live]
        elapsed = time.monotonic() - started

        result = reconcile(sandbox.url, sim)
        stats = admin_get(sandbox.url, "/_admin/stats")
        applied_posts = [
            r
            for r in sandbox_requests(sandbox.url)
            if r["method"] == "POST" and r["fulfillmentId"] is not None
        ]

    events = len(sim.events)
    engine_reads = _engine_reads(tmp_path)
    dr_reads = _route_total(stats, "GET /fulfillments")
    dead = read_topic(group.bootstrap, f"{group.topic}.dlq")
    figures = {
        "seed": SEED,
        "events": events,
        "poison_records": len(poison),
        "kills": len(backlog_at_kills),
        "uncommitted_records_at_each_kill": backlog_at_kills,
        "members_started": len(group.members),
        "faults_injected": stats["faultsInjected"],
        "rate_limited_429": stats["rateLimited"],
        "posts_applied": len(applied_posts),
        "posts_sent": _route_total(stats, "POST /fulfillments"),
        "reconciliation_reads_at_dr": dr_reads,
        "reconciliation_reads_per_1000_events": round(1000 * dr_reads / events, 1),
        "engine_reported_reads": engine_reads,
        "engine_reported_reads_per_1000_events": round(1000 * engine_reads / events, 1),
        "dead_letters": len(dead),
        "by_status": stats["byStatus"],
        "seconds": round(elapsed, 1),
    }
    figures_path = tmp_path / "chaos-figures.json"
    figures_path.write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")
    print(f"chaos figures ({figures_path}):\n{json.dumps(figures, indent=2, sort_keys=True)}")  # noqa: T201 - the figures are the report

    # the group ended clean and at the end of the topic
    assert exit_codes == [0] * len(live)
    assert group.all_committed()

    # the ledger is exactly what was published: 0 lost, 0 captured twice, order kept
    assert result.mismatches == []
    assert result.duplicate_events == 0
    assert result.order_violations == 0
    applied = Counter(event_id for r in applied_posts for event_id in event_ids_of(r["body"]))
    assert applied == Counter(e.event_id for e in sim.events), (
        "each event applied exactly once, apply-then-fail and kills included"
    )
    position = {e.event_id: i for i, e in enumerate(sim.events)}
    last: dict[str, int] = {}
    for request in applied_posts:  # arrival order at Digital River, failed answers included
        order = str(request["body"]["orderId"])
        for at in sorted(position[i] for i in event_ids_of(request["body"])):
            assert at > last.get(order, -1), f"{order}: an event overtook an earlier one"
            last[order] = at

    # every poison record dead-lettered with its reason and origin; nothing else there
    where = {(r.key, r.value): p for r, p in placed}
    assert {(r.key, r.value) for r in dead} == {(b.key, b.value) for _, b in poison}
    for error_class, bad in poison:
        letters = [r for r in dead if (r.key, r.value) == (bad.key, bad.value)]
        source = where[(bad.key, bad.value)]
        for letter in letters:  # a kill before the commit may dead-letter it again: same letter
            assert letter.header("fc.error.class") == error_class
            assert letter.header("fc.error.reason")
            assert letter.header("fc.source.topic") == group.topic
            assert letter.header("fc.source.partition") == str(source.partition)
            assert letter.header("fc.source.offset") == str(source.offset)
            assert letter.header("trace-id") == "chaos"
    assert read_topic(group.bootstrap, f"{group.topic}.parked") == [], "nothing was parked"

    # the chaos really happened
    assert len(backlog_at_kills) == CHAOS_ROUNDS
    assert max(backlog_at_kills) > 0, "a member was killed with work outstanding"
    assert stats["rateLimited"] > 0
    assert stats["faultsInjected"]["error"] > 0
    assert stats["faultsInjected"]["applyThenFail"] > 0
