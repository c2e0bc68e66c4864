"""Producers republish events: an eventId is captured or cancelled at most once (issue #9)."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx2
import pytest

from consumer.core.events import FulfillmentEvent
from consumer.core.fulfillments import event_ids_of
from consumer.sandbox.config import SandboxConfig
from consumer.sandbox.server import SandboxServer
from consumer.tools.demo import reconcile
from consumer.tools.warehouse.simulator import seed_sandbox, simulate
from tests.event_builders import shipment
from tests.integration.group_harness import Group, wait_until
from tests.integration.records import (
    admin_get,
    produce,
    read_topic,
    sandbox_requests,
    seed_orders,
    valid_record,
)

pytestmark = pytest.mark.kafka


def with_republished(
    events: tuple[FulfillmentEvent, ...], count: int, seed: int
) -> list[FulfillmentEvent]:
    """`events` with `count` of them published a second time 1-5 records after the original."""
    rng = random.Random(seed)
    chosen = set(rng.sample(range(len(events)), count))
    out: list[FulfillmentEvent] = []
    waiting: list[tuple[int, FulfillmentEvent]] = []  # (records still to pass, duplicate)
    for index, event in enumerate(events):
        out.append(event)
        waiting = [(left - 1, dup) for left, dup in waiting]
        out.extend(dup for left, dup in waiting if left <= 0)
        waiting = [(left, dup) for left, dup in waiting if left > 0]
        if index in chosen:
            waiting.append((rng.randint(1, 5), event))
    out.extend(dup for _, dup in waiting)
    return out


def _stats(sandbox: SandboxServer) -> dict[str, Any]:
    found: dict[str, Any] = httpx2.get(f"{sandbox.url}/_admin/stats", timeout=10).json()
    return found


def run_with_duplicates(
    sandbox: SandboxServer, group: Group, orders: int, duplicates: int
) -> dict[str, int]:
    sim = simulate(orders, seed=9)
    with httpx2.Client(timeout=30) as client:
        seed_sandbox(sandbox.url, sim, client)
    published = with_republished(sim.events, duplicates, seed=9)
    assert len(published) == len(sim.events) + duplicates
    produce(group.bootstrap, group.topic, [valid_record(e) for e in published])
    members = [group.start_member(), group.start_member()]
    wait_until(group.all_committed, 300, "every record, duplicates included, is settled")
    assert [group.stop(m) for m in members] == [0, 0]

    result = reconcile(sandbox.url, sim)
    stats = _stats(sandbox)["byRoute"]
    parked = read_topic(group.bootstrap, f"{group.topic}.parked")
    log = group.log_text()
    figures = {
        "events": len(sim.events),
        "republished": duplicates,
        "posts": sum(stats.get("POST /fulfillments", {}).values()),
        "reads": sum(stats.get("GET /fulfillments", {}).values()),
        "events_applied": result.events_posted,
        "parked": len(parked),
        "changelog_records": len(read_topic(group.bootstrap, f"{group.topic}.applied")),
    }
    print(f"\nduplicate run: {figures}")  # noqa: T201 - the figures are the report
    assert result.mismatches == [], result.mismatches[:5]
    assert result.duplicate_events == 0, "an event was captured twice"
    assert result.order_violations == 0
    assert parked == [], "no order is parked"
    assert "409" not in stats.get("POST /fulfillments", {})
    assert '"duplicate"' in log or "duplicates" in log
    return figures


def test_events_republished_right_behind_their_original_apply_once_and_park_nothing(
    sandbox: SandboxServer, make_group: Callable[..., Group]
) -> None:
    group = make_group(3, sandbox.url)
    figures = run_with_duplicates(sandbox, group, orders=300, duplicates=30)
    assert figures["events_applied"] == figures["events"]


@pytest.mark.slow
def test_two_thousand_orders_with_two_hundred_republished_events_end_exactly_as_published(
    sandbox: SandboxServer, make_group: Callable[..., Group]
) -> None:
    group = make_group(6, sandbox.url)
    figures = run_with_duplicates(sandbox, group, orders=2000, duplicates=200)
    assert figures["events_applied"] == figures["events"]


def _posted_ids(sandbox_url: str, order_id: str) -> list[str]:
    return [
        event_id
        for r in sandbox_requests(sandbox_url, order_id)
        if r["method"] == "POST" and r["status"] == 201
        for event_id in sorted(event_ids_of(r["body"] or {}))
    ]


def test_a_duplicate_published_after_a_member_restart_is_not_applied(
    make_group: Callable[..., Group],
) -> None:
    with SandboxServer(SandboxConfig(strict_orders=True)) as sandbox:
        group = make_group(1, sandbox.url)
        seed_orders(sandbox.url, [("ord_a", {"itm_a": 5})])
        original = shipment(str(uuid.uuid4()), "ord_a", (("itm_a", 2),))
        produce(group.bootstrap, group.topic, [valid_record(original)])
        assert group.run_member_to_the_end(60, "the original is applied and committed") == 0

        # the outbox relay republishes it later; a new member (nothing in memory) reads it
        later = shipment(str(uuid.uuid4()), "ord_a", (("itm_a", 1),))
        produce(group.bootstrap, group.topic, [valid_record(original), valid_record(later)])
        assert group.run_member_to_the_end(60, "the duplicate and the later event are settled") == 0
        lines = admin_get(sandbox.url, "/_admin/ledger", orderId="ord_a")["orders"]["ord_a"]
        assert lines["lines"]["itm_a"]["captured"] == 3
        assert sorted(_posted_ids(sandbox.url, "ord_a")) == sorted(
            [original.event_id, later.event_id]
        )
        assert "dedupe_restored" in group.log_text()


def test_a_duplicate_older_than_the_window_is_posted_as_a_new_event(
    make_group: Callable[..., Group],
) -> None:
    """What the README says: past DEDUPE_WINDOW_HOURS an eventId is no longer recognised."""
    with SandboxServer(SandboxConfig(strict_orders=True)) as sandbox:
        group = make_group(1, sandbox.url, DEDUPE_WINDOW_HOURS="0.001")  # 3.6 s
        seed_orders(sandbox.url, [("ord_a", {"itm_a": 5})])
        original = shipment(str(uuid.uuid4()), "ord_a", (("itm_a", 2),))
        produce(group.bootstrap, group.topic, [valid_record(original)])
        assert group.run_member_to_the_end(60, "the original is applied and committed") == 0
        applied_by = time.monotonic()
        wait_until(lambda: time.monotonic() > applied_by + 8, 30, "the window has passed")

        produce(group.bootstrap, group.topic, [valid_record(original)])
        assert group.run_member_to_the_end(60, "the late duplicate is settled") == 0
        lines = admin_get(sandbox.url, "/_admin/ledger", orderId="ord_a")["orders"]["ord_a"]
        assert lines["lines"]["itm_a"]["captured"] == 4
