"""Liveness: a crash-looping member does not stall the group (issue #8), per group protocol.

Three members; for three minutes a seeded RNG SIGKILLs a random member every ~10 s and starts a
replacement at once (a pod in a crash loop), while the warehouse keeps publishing (~1,500 events:
a quarter at once, a third in waves, the rest 20 s before the kills stop, so the last kill lands
on a backlog) and Digital River misbehaves: 5% 5xx, 2% apply-then-fail, a 10 s outage (every
request fails) and a 25 req/s limit (the members are told 25 req/s too). Then the kills stop. The
ledger must be exactly what was published (both protocols), and every offset committed within
120 s of the last kill (asserted for the default consumer protocol; classic's time is recorded).
Each protocol runs with a 6 s session timeout (shorter than the kill interval) and with 45 s
(the production default: dead members pile up); classic's is the client's
`session.timeout.ms`, consumer's the group's `consumer.session.timeout.ms` on the broker. Kills,
publishing and sampling run apart so a slow broker answer never delays a kill.

All four run in one session, side by side; their figures (seconds from the last kill to all
committed, DR calls per event, the longest time a partition had no owner) are printed and written
to `crash-loop-figures.json` in pytest's base temp directory (~17 minutes in all).
"""

from __future__ import annotations

import contextlib
import json
import random
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from confluent_kafka import KafkaException

from consumer.core.fulfillments import event_ids_of
from consumer.sandbox.config import FaultSettings, SandboxConfig
from consumer.sandbox.server import SandboxServer
from consumer.tools.demo import reconcile
from consumer.tools.warehouse.simulator import seed_sandbox, simulate
from tests.integration.group_harness import Group
from tests.integration.records import (
    OutgoingRecord,
    admin_get,
    produce,
    sandbox_requests,
    valid_record,
)

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

SEED = 848
ORDERS = 660  # ~1,500 events: a 25 req/s limit can finish them; the point is liveness
PARTITIONS = 12
MEMBERS = 3
CHAOS_S = 180.0
KILL_EVERY_S = (8.0, 12.0)
# Publishing goes on through the chaos: a quarter at the start, a third in waves every 10 s, and
# the rest shortly before the kills stop, so the last kill lands on a backlog the group must
# still work through (at 25 req/s, about a minute of Digital River time in all)
FIRST_SHARE, STEADY_SHARE = 0.25, 0.35
STEADY_WAVES = 14  # at 10 s, 20 s, ... 140 s
LAST_WAVE_AT_S = CHAOS_S - 20.0
OUTAGE_AT_S, OUTAGE_S = 70.0, 10.0
RATE_LIMIT = 25.0
ERROR_RATE, APPLY_THEN_FAIL_RATE = 0.05, 0.02
FAULTS = FaultSettings(
    latency_ms=20,
    error_rate=ERROR_RATE,
    apply_then_fail_rate=APPLY_THEN_FAIL_RATE,
    rate_limit=RATE_LIMIT,
    seed=SEED,
)
MEMBER_ENV = {
    "DR_RATE_LIMIT": str(int(RATE_LIMIT)),
    "DR_TIMEOUT_SECONDS": "5",
    "MAX_IN_FLIGHT_ORDERS": "16",
}
COMMITTED_WITHIN_S = 120.0  # after the last kill
GIVE_UP_S = 600.0  # how long a protocol that misses the bound is watched, to record its figure
SAMPLE_EVERY_S = 1.0
# 6 s: shorter than the kill interval (the tests' usual fast group); 45 s: both protocols'
# production default, longer than the kill interval, so dead members pile up
SESSION_TIMEOUTS_S = (6, 45)


@pytest.fixture(scope="module")
def figures_by_protocol(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Each protocol's figures; written side by side once both (or either) ran."""
    found: dict[str, Any] = {}
    yield found
    if found:
        path = tmp_path_factory.getbasetemp() / "crash-loop-figures.json"
        path.write_text(json.dumps(found, indent=2, sort_keys=True) + "\n")
        print(f"\ncrash-loop figures ({path}):\n{json.dumps(found, indent=2, sort_keys=True)}")  # noqa: T201 - the figures are the report


def _set_outage(sandbox_url: str, *, on: bool) -> None:
    faults = (
        {"errorRate": 1.0, "applyThenFailRate": 0.0}
        if on
        else {"errorRate": ERROR_RATE, "applyThenFailRate": APPLY_THEN_FAIL_RATE}
    )
    httpx2.put(f"{sandbox_url}/_admin/faults", json=faults, timeout=30).raise_for_status()


class Watcher:
    """Samples the group in the background, so slow broker answers never delay a kill: which
    partitions have an owner (the longest stretch each had none) and how many records are
    committed."""

    def __init__(self, group: Group, started: float) -> None:
        self._group = group
        self._origin = started
        self._thread = threading.Thread(target=self._run, name="crash-loop-watcher", daemon=True)
        self._halt = threading.Event()
        self._since: dict[int, float] = {}  # partition -> when it was first seen unowned
        self.longest: dict[int, float] = dict.fromkeys(range(group.partitions), 0.0)
        self.committed = 0

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._halt.wait(SAMPLE_EVERY_S):
            now = time.monotonic() - self._origin
            try:
                owned = self._group.owned_partitions()
                self.committed = self._group.committed_total()
            except (KafkaException, TimeoutError):  # a missed sample, not a result
                continue
            for p in range(self._group.partitions):
                if p in owned:
                    self._since.pop(p, None)
                else:
                    start = self._since.setdefault(p, now)
                    self.longest[p] = max(self.longest[p], now - start)

    def stop(self) -> None:
        self._halt.set()
        self._thread.join(timeout=60)


class Warehouse:
    """Publishes on schedule in the background; `published` counts what the broker acknowledged."""

    def __init__(
        self, group: Group, started: float, schedule: list[tuple[float, list[OutgoingRecord]]]
    ) -> None:
        self._group = group
        self._origin = started
        self._schedule = schedule
        self.published = 0
        self.failed: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="crash-loop-warehouse", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def _run(self) -> None:
        try:
            for at, records in self._schedule:
                time.sleep(max(0.0, self._origin + at - time.monotonic()))
                self.published += len(produce(self._group.bootstrap, self._group.topic, records))
        except BaseException as exc:  # reported by the test
            self.failed = exc


def _publishing_schedule(
    records: list[OutgoingRecord],
) -> list[tuple[float, list[OutgoingRecord]]]:
    """(seconds into the chaos, records to publish then), in publish order."""
    first = int(len(records) * FIRST_SHARE)
    steady = int(len(records) * STEADY_SHARE)
    size = -(-steady // STEADY_WAVES)
    schedule = [(0.0, records[:first])]
    for n, start in enumerate(range(first, first + steady, size)):
        schedule.append((10.0 * (n + 1), records[start : min(start + size, first + steady)]))
    schedule.append((LAST_WAVE_AT_S, records[first + steady :]))
    return schedule


def _session_env(protocol: str, session_timeout_s: int) -> dict[str, str]:
    """The member's session timeout under classic (under consumer it is the broker's)."""
    if protocol == "classic":
        return {"KAFKA_SESSION_TIMEOUT_MS": str(session_timeout_s * 1000)}
    return {}


def _dr_routes(stats: dict[str, Any]) -> dict[str, dict[str, int]]:
    """Requests per Digital River route ("POST /fulfillments", ...) and status; no `/_admin`."""
    return {
        route: {status: int(n) for status, n in by.items()}
        for route, by in stats["byRoute"].items()
        if not route.split(" ", 1)[-1].startswith("/_admin")
    }


@pytest.mark.timeout(CHAOS_S + GIVE_UP_S + 180)
@pytest.mark.parametrize("session_timeout_s", SESSION_TIMEOUTS_S, ids=lambda n: f"session-{n}s")
@pytest.mark.parametrize("protocol", ["consumer", "classic"])
def test_a_member_killed_every_ten_seconds_does_not_stall_the_group(
    protocol: str,
    session_timeout_s: int,
    make_group: Callable[..., Group],
    figures_by_protocol: dict[str, Any],
    tmp_path: Path,
) -> None:
    rng = random.Random(SEED)
    sim = simulate(ORDERS, seed=SEED)
    records = [valid_record(e) for e in sim.events]
    schedule = _publishing_schedule(records)
    kills: list[float] = []  # seconds into the chaos
    backlog_at_kills: list[int] = []
    with SandboxServer(SandboxConfig(strict_orders=True, faults=FAULTS)) as sandbox:
        with httpx2.Client(timeout=30) as client:
            seed_sandbox(sandbox.url, sim, client)
        group = make_group(
            PARTITIONS,
            sandbox.url,
            KAFKA_GROUP_PROTOCOL=protocol,
            **_session_env(protocol, session_timeout_s),
            **MEMBER_ENV,
        )
        if protocol == "consumer":  # the broker's setting for this group under KIP-848
            group.set_group_config(consumer_session_timeout_ms=str(session_timeout_s * 1000))
        live: list[subprocess.Popen[bytes]] = [group.start_member() for _ in range(MEMBERS)]
        started = time.monotonic()
        warehouse = Warehouse(group, started, schedule)
        watcher = Watcher(group, started)
        warehouse.start()
        watcher.start()
        next_kill = rng.uniform(*KILL_EVERY_S)
        outage = "before"
        while (now := time.monotonic() - started) < CHAOS_S:
            if outage == "before" and now >= OUTAGE_AT_S:
                _set_outage(sandbox.url, on=True)
                outage = "on"
            elif outage == "on" and now >= OUTAGE_AT_S + OUTAGE_S:
                _set_outage(sandbox.url, on=False)
                outage = "over"
            if now >= next_kill:
                backlog_at_kills.append(warehouse.published - watcher.committed)
                group.kill(live.pop(rng.randrange(len(live))))
                kills.append(time.monotonic() - started)
                live.append(group.start_member())  # the pod restarts at once
                next_kill += rng.uniform(*KILL_EVERY_S)
            time.sleep(0.1)
        last_kill = started + kills[-1]
        backlog_at_last_kill = backlog_at_kills[-1]
        warehouse.join(timeout=120)
        assert warehouse.failed is None, f"publishing failed: {warehouse.failed!r}"
        assert warehouse.published == len(records)

        # the kills stopped: how long until every offset is committed?
        done = False
        while time.monotonic() - last_kill < GIVE_UP_S:
            with contextlib.suppress(KafkaException):
                if group.all_committed():
                    done = True
                    break
            time.sleep(SAMPLE_EVERY_S)
        to_committed = time.monotonic() - last_kill
        watcher.stop()
        exit_codes = [group.stop(member) for member in live]

        result = reconcile(sandbox.url, sim)
        stats = admin_get(sandbox.url, "/_admin/stats")
        applied_posts = [
            r
            for r in sandbox_requests(sandbox.url)
            if r["method"] == "POST" and r["fulfillmentId"] is not None
        ]

    events = len(sim.events)
    routes = _dr_routes(stats)
    dr_calls = sum(n for by in routes.values() for n in by.values())
    not_429 = sum(n for by in routes.values() for status, n in by.items() if status != "429")
    figures = {
        "events": events,
        "kills": len(kills),
        "members_started": len(group.members),
        "uncommitted_records_at_each_kill": backlog_at_kills,
        "uncommitted_records_at_last_kill": backlog_at_last_kill,
        "seconds_from_last_kill_to_all_committed": round(to_committed, 1) if done else None,
        "all_committed": done,
        "longest_seconds_a_partition_had_no_owner": round(max(watcher.longest.values()), 1),
        "dr_calls": dr_calls,
        "dr_calls_by_route": routes,
        "dr_calls_per_event": round(dr_calls / events, 3),
        "dr_calls_per_event_without_429s": round(not_429 / events, 3),
        "rate_limited_429": stats["rateLimited"],
        "faults_injected": stats["faultsInjected"],
        "by_status": stats["byStatus"],
    }
    figures["session_timeout_s"] = session_timeout_s
    figures_by_protocol[f"{protocol}, session timeout {session_timeout_s} s"] = figures
    (tmp_path / "crash-loop-figures.json").write_text(json.dumps(figures, indent=2) + "\n")
    title = f"crash loop, {protocol} protocol, session timeout {session_timeout_s} s"
    print(f"{title}:\n{json.dumps(figures, indent=2)}")  # noqa: T201 - the figures are the report

    # the chaos really happened
    assert len(kills) >= CHAOS_S / KILL_EVERY_S[1] - 1
    assert backlog_at_last_kill > 0, "the last kill landed on work outstanding"
    assert stats["faultsInjected"]["error"] > 0
    assert stats["faultsInjected"]["applyThenFail"] > 0

    # liveness first: the ledger can only be whole once everything was processed
    assert done, f"{protocol}: records still uncommitted {GIVE_UP_S:.0f}s after the last kill"

    # the ledger is exactly what was published: nothing missing, nothing captured twice
    assert result.mismatches == []
    assert result.duplicate_events == 0
    assert result.order_violations == 0
    applied = Counter(event_id for r in applied_posts for event_id in event_ids_of(r["body"]))
    assert applied == Counter(e.event_id for e in sim.events), "each event applied exactly once"
    assert exit_codes == [0] * len(live)

    # every offset committed within the bound after the last kill: the promise of the default
    # protocol. Classic's time is recorded, not asserted: with the 45 s production session
    # timeout it stalls through the crash loop (first side-by-side run: 1,337 of 1,498 records
    # uncommitted at the last kill, a partition without owner for 98 s, all committed 110 s after
    # the last kill, against 851 / 51 s / 69 s for the consumer protocol), too close to the
    # bound to hold on a loaded machine
    if protocol == "consumer":
        assert to_committed <= COMMITTED_WITHIN_S, (
            f"{protocol}: {to_committed:.0f}s from the last kill to all committed"
        )
