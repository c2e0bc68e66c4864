"""The whole group stays within the key's rate limit with no coordinator (PRODUCT.md guarantee 7).

Digital River limits requests per KEY, and every member of the group sends with the same key
(DR-API.md, "Rate limits and timing"). Nothing coordinates the members at run time: each
partition's owner publishes the partition's demand in its offset commits, and each member takes
its partitions' fair share of `DR_RATE_LIMIT` (docs/budget.md) and spends it through its own token
bucket. Three real member processes, a real broker and a sandbox that enforces the limit
on loopback show that the shares add up to the key's limit: few 429s, the group's achieved rate
close under the limit, and a ledger that reconciles exactly.

A contrast run proves the measurement can fail: members told the group may send 3x what the key
allows (the same as three members each taking the whole limit for itself) keep drawing 429s,
several times the shared run's bound. (Not ~2/3 of their requests: a 429 pauses the member that
got it for Retry-After, which throttles an over-limit group to about the key's rate.)

The backlog is published only once the group has settled. Members that start on a waiting
backlog measure something else: the first to join owns all 12 partitions at the full rate, its
revocation drains its in-flight orders at that rate (~12 s here), and by then it has finished
the partitions it keeps, so its third of the rate idles while the others work: the group runs
at ~2/3 of the key's limit until the end (within the limit, as guaranteed; not using all of it).
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx2
import pytest
from confluent_kafka import Producer

from consumer.codec.avro import encode_single_object
from consumer.sandbox.config import FaultSettings, SandboxConfig
from consumer.sandbox.server import SandboxServer
from consumer.tools.demo import Reconciliation, reconcile
from consumer.tools.warehouse.simulator import Simulation, seed_sandbox, simulate
from tests.integration.group_harness import Group, wait_until
from tests.integration.records import admin_get, sandbox_requests

pytestmark = pytest.mark.kafka

RATE = 30.0  # requests/s the sandbox lets through per key: the key's limit
PARTITIONS = 12
MEMBERS = 3
SHARED_ORDERS = 560  # ~870 POSTs: ~30 s at RATE
CONTRAST_ORDERS = 250  # ~390 POSTs: ~13 s, only the 429s are measured
SEED = 7302
FINISH_TIMEOUT_S = 150

# The group settles (each member owns its third of the partitions) before the backlog is
# published, so no rebalance moves shares during the run. What is left that could draw a 429:
# each member's bucket starts with a burst saved up (DR_RATE_LIMIT / 10 each, 0.3 x RATE for the
# group, well inside the key's one-second burst), and scheduling jitter on a shared machine. So
# none are expected; 1% is the slack. A group whose shares add up to more than the key allows
# keeps drawing 429s: each one pauses only the member that got it (for Retry-After, >= 1 s),
# the others keep going over, so a 3x group draws a few every second (measured: 4.5-6.6% of its
# requests; not ~2/3, because the pauses throttle it). CONTRAST_429_FLOOR sits between the two.
SHARED_429_CEILING = 0.01
CONTRAST_429_FLOOR = 3 * SHARED_429_CEILING
CONTRAST_MIN_429 = 10  # and enough of them that a few jittery ones could not pass for it
RATE_CEILING = RATE * 1.1  # the group never sends faster than the key allows (timing slack)
RATE_FLOOR = RATE * 0.6  # ...and uses its budget rather than idling far under it
STEADY = (0.25, 0.75)  # the middle half of the run: every member joined, none drained yet


@dataclass(frozen=True, slots=True)
class Run:
    requests: int
    rate_limited: int
    steady_rate: float
    steady_requests: int
    steady_seconds: float
    seconds: float
    exit_codes: list[int]
    reconciliation: Reconciliation
    committed: bool

    @property
    def rate_limited_share(self) -> float:
        return self.rate_limited / self.requests

    def describe(self, name: str) -> str:
        return (
            f"{name}: {self.requests} requests, {self.rate_limited} answered 429 "
            f"({100 * self.rate_limited_share:.1f}%), achieved {self.steady_rate:.1f} requests/s "
            f"over the steady middle ({self.steady_requests} requests in "
            f"{self.steady_seconds:.1f} s; key limit {RATE:g}/s), {self.seconds:.1f} s end to end"
        )


def _steady_rate(requests: list[dict[str, Any]]) -> tuple[float, int, float]:
    """Requests/s the sandbox received over the middle of the run: (rate, requests, seconds)."""
    times = sorted(datetime.fromisoformat(r["receivedAt"]).timestamp() for r in requests)
    first, last = times[0], times[-1]
    start = first + STEADY[0] * (last - first)
    end = first + STEADY[1] * (last - first)
    inside = sum(1 for t in times if start <= t < end)
    return inside / (end - start), inside, end - start


def _owned(log: Path) -> set[int]:
    """The partitions a member owns now, by its own log (cooperative: assignments add, revocations
    take away)."""
    owned: set[int] = set()
    for line in log.read_text(errors="replace").splitlines() if log.exists() else []:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if not isinstance(entry, dict):
            continue
        if entry.get("event") == "partitions_assigned":
            owned |= set(entry["partitions"])
        elif entry.get("event") in ("partitions_revoked", "partitions_lost"):
            owned -= set(entry["partitions"])
    return owned


def _settled(logs: list[Path]) -> bool:
    """Every member owns an equal share of the partitions and together they own them all."""
    owned = [_owned(log) for log in logs]
    return all(len(o) == PARTITIONS // MEMBERS for o in owned) and len(set().union(*owned)) == (
        PARTITIONS
    )


def _run(make_group: Callable[..., Group], orders: int, group_rate_limit: float) -> Run:
    """Three members with `DR_RATE_LIMIT=group_rate_limit` against a sandbox limited to RATE."""
    sim = simulate(orders, seed=SEED)
    faults = FaultSettings(latency_ms=10, rate_limit=RATE, seed=SEED)
    with SandboxServer(SandboxConfig(strict_orders=True, faults=faults)) as sandbox:
        with httpx2.Client(timeout=30) as client:
            seed_sandbox(sandbox.url, sim, client)
        group = make_group(PARTITIONS, sandbox.url, DR_RATE_LIMIT=f"{group_rate_limit:g}")
        members: list[subprocess.Popen[bytes]] = [group.start_member() for _ in range(MEMBERS)]
        logs = [group.logs / f"member-{i}.log" for i in range(MEMBERS)]
        wait_until(lambda: _settled(logs), 60, "every member owning its third of the partitions")
        group.publish(sim)
        started = time.monotonic()
        wait_until(group.all_committed, FINISH_TIMEOUT_S, "every event committed")
        seconds = time.monotonic() - started
        exit_codes = [group.stop(member) for member in members]
        committed = group.all_committed()
        stats = admin_get(sandbox.url, "/_admin/stats")
        requests = list(sandbox_requests(sandbox.url))
        result = reconcile(sandbox.url, sim)
    rate, inside, window = _steady_rate(requests)
    assert stats["received"] == len(requests)
    return Run(
        requests=len(requests),
        rate_limited=int(stats["rateLimited"]),
        steady_rate=rate,
        steady_requests=inside,
        steady_seconds=window,
        seconds=seconds,
        exit_codes=exit_codes,
        reconciliation=result,
        committed=committed,
    )


def _assert_exact(run: Run) -> None:
    assert run.exit_codes == [0] * MEMBERS
    assert run.committed
    assert run.reconciliation.mismatches == []
    assert run.reconciliation.duplicate_events == 0
    assert run.reconciliation.order_violations == 0


def test_three_members_share_the_keys_rate_limit_without_a_coordinator(
    make_group: Callable[..., Group],
) -> None:
    """Each member takes a third; together they send at the key's limit and hardly ever over."""
    run = _run(make_group, SHARED_ORDERS, group_rate_limit=RATE)  # the operator sets the key's
    print(run.describe("shared (DR_RATE_LIMIT = the key's limit)"))  # noqa: T201 - the figures

    _assert_exact(run)
    assert run.requests >= 800, "enough requests to measure a rate over"
    assert run.rate_limited <= SHARED_429_CEILING * run.requests, (
        f"{run.rate_limited} of {run.requests} requests answered 429: the members' shares add up "
        f"to more than the key's {RATE:g}/s"
    )
    assert run.steady_rate <= RATE_CEILING, f"the group sent {run.steady_rate:.1f}/s"
    assert run.steady_rate >= RATE_FLOOR, f"the group used only {run.steady_rate:.1f}/s"


def test_members_told_three_times_the_keys_limit_draw_many_429s(
    make_group: Callable[..., Group],
) -> None:
    """The contrast: the same group with every share 3x too big fails the shared run's bound."""
    run = _run(make_group, CONTRAST_ORDERS, group_rate_limit=3 * RATE)
    print(run.describe("contrast (DR_RATE_LIMIT = 3x the key's limit)"))  # noqa: T201 - figures

    _assert_exact(run)  # 429s cost time, never correctness
    assert run.rate_limited > CONTRAST_429_FLOOR * run.requests, (
        f"only {run.rate_limited} of {run.requests} requests answered 429: the check on the "
        "shared run could not tell a group over the key's limit from one within it"
    )
    assert run.rate_limited >= CONTRAST_MIN_429


def _publish_on(bootstrap: str, topic: str, sim: Simulation, partitions: list[int]) -> None:
    """Every order's events on one of `partitions` (named explicitly, no hashing)."""
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for i, order in enumerate(sim.orders):
        placed = partitions[i % len(partitions)]
        for event in (e for e in sim.events if e.order_id == order.id):
            producer.produce(
                topic, encode_single_object(event), event.order_id.encode(), partition=placed
            )
        producer.poll(0)
    assert producer.flush(60) == 0


def test_a_member_with_all_the_work_takes_what_the_idle_members_leave_within_the_limit(
    make_group: Callable[..., Group],
) -> None:
    """Uneven sharing: the whole backlog on one member's partitions. Shares that follow the
    partitions would hold it to a third of the key's limit; demand published in the commits lets
    it use nearly all of it, and the group as a whole still stays within the limit."""
    sim = simulate(SHARED_ORDERS, seed=SEED)
    faults = FaultSettings(latency_ms=10, rate_limit=RATE, seed=SEED)
    with SandboxServer(SandboxConfig(strict_orders=True, faults=faults)) as sandbox:
        with httpx2.Client(timeout=30) as client:
            seed_sandbox(sandbox.url, sim, client)
        group = make_group(PARTITIONS, sandbox.url, DR_RATE_LIMIT=f"{RATE:g}")
        members = [group.start_member() for _ in range(MEMBERS)]
        logs = [group.logs / f"member-{i}.log" for i in range(MEMBERS)]
        wait_until(lambda: _settled(logs), 60, "every member owning its third of the partitions")
        busy = sorted(_owned(logs[0]))
        _publish_on(group.bootstrap, group.topic, sim, busy)

        def busy_committed() -> bool:  # the idle partitions hold nothing to commit
            committed, ends = group.committed(), group.end_offsets()
            return all(committed[p] == ends[p] for p in busy)

        wait_until(busy_committed, FINISH_TIMEOUT_S, "every event committed")
        exit_codes = [group.stop(member) for member in members]
        stats = admin_get(sandbox.url, "/_admin/stats")
        requests = list(sandbox_requests(sandbox.url))
        result = reconcile(sandbox.url, sim)
    rate, inside, window = _steady_rate(requests)
    limited = int(stats["rateLimited"])
    print(  # noqa: T201 - the figures
        f"one busy member (partitions {busy}): {len(requests)} requests, {limited} answered 429, "
        f"{rate:.1f}/s over the steady middle ({inside} in {window:.1f} s; key limit {RATE:g}/s)"
    )
    assert exit_codes == [0] * MEMBERS
    assert result.mismatches == []
    assert result.duplicate_events == 0
    assert limited <= SHARED_429_CEILING * len(requests)
    assert rate <= RATE_CEILING, f"the group sent {rate:.1f}/s"
    # shares by partition would hold it to RATE / 3; measured 24.7/s on a loaded machine
    assert rate >= RATE_FLOOR, f"the busy member was held to {rate:.1f}/s of {RATE:g}/s"
