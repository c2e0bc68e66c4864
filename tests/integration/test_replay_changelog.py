"""A replay after Kafka's own offset reset, settled from the applied-events changelog.

The changelog (`<topic>.applied`) names exactly which events each source partition applied, with
their source offsets. A member that takes a partition reset to earliest (a commit with no
metadata of ours: everything up to the end offset is unsure) settles every record the changelog
names as a duplicate, with no request to Digital River; only records the changelog cannot vouch
for are reconciled (per order here: too few for a listing) and posted when missing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2
import pytest

from consumer.sandbox.server import SandboxServer
from consumer.tools.demo import reconcile
from consumer.tools.warehouse.simulator import seed_sandbox, simulate
from tests.integration.group_harness import Group, split
from tests.integration.records import last_request_seq, requests_after

pytestmark = pytest.mark.kafka
SANDBOX_LATENCY_MS = 2

PARTITIONS = 2
ORDERS = 120


def _stopped_stats(log: Path) -> dict[str, Any]:
    for line in reversed(log.read_text(errors="replace").splitlines()):
        if line.startswith("{") and '"member_stopped"' in line:
            entry: dict[str, Any] = json.loads(line)
            return entry
    raise AssertionError(f"{log} has no member_stopped line")


def test_a_replay_from_earliest_of_applied_events_posts_nothing_and_reads_nothing(
    sandbox: SandboxServer, make_group: Callable[..., Group]
) -> None:
    sim = simulate(ORDERS, seed=7070)
    with httpx2.Client(timeout=30) as client:
        seed_sandbox(sandbox.url, sim, client)
    group = make_group(PARTITIONS, sandbox.url)
    group.apply_then_reset_to_earliest(sim)
    seen = last_request_seq(sandbox.url)

    assert group.run_member_to_the_end(120, "every record read again and settled") == 0

    assert requests_after(sandbox.url, seen) == [], "the replay asked Digital River something"
    result = reconcile(sandbox.url, sim)
    assert result.mismatches == []
    assert result.duplicate_events == 0
    assert _stopped_stats(group.logs / "member-1.log")["duplicates"] == len(sim.events)


def test_a_replay_of_orders_applied_in_part_posts_exactly_the_missing_events(
    sandbox: SandboxServer, make_group: Callable[..., Group]
) -> None:
    sim = simulate(ORDERS, seed=7171)
    applied_first, never_applied, mixed = split(sim, len(sim.events) // 2)
    assert mixed, "some orders have events on both sides of the reset"
    with httpx2.Client(timeout=30) as client:
        seed_sandbox(sandbox.url, sim, client)
    group = make_group(PARTITIONS, sandbox.url)
    group.apply_then_reset_to_earliest(applied_first, unread=never_applied)
    seen = last_request_seq(sandbox.url)  # the reset range is read after this request

    assert group.run_member_to_the_end(120, "every record read again and settled") == 0

    result = reconcile(sandbox.url, sim)
    assert result.mismatches == [], "an event was applied twice or never"
    assert result.duplicate_events == 0
    assert result.order_violations == 0
    after = requests_after(sandbox.url, seen)
    missing_orders = {e.order_id for e in never_applied.events}
    posted = {r["orderId"] for r in after if r["method"] == "POST"}
    read = {
        r["orderId"] for r in after if r["method"] == "GET" and "orderId=" in (r["query"] or "")
    }
    assert posted <= missing_orders
    assert posted & mixed, "orders with events on both sides got their missing events"
    assert read <= missing_orders, "an order the changelog vouches for wholly was read"
    stats = _stopped_stats(group.logs / "member-1.log")
    assert stats["duplicates"] == len(applied_first.events)
