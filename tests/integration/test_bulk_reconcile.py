"""Bulk reconciliation on the real broker: a reset with Kafka's tooling re-applies nothing and
misses nothing, checking in pages of 100 rather than one read per order.

Offsets moved by another tool carry no metadata of ours, so every record up to the end offset is
unsure for the member that takes the partition. It lists Digital River's fulfillments created
since those records were produced and settles what their metadata names; what is not there is
posted; per-order reads are only for records the listing cannot speak for.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx2
import pytest

from consumer.core.bulk_reconcile import BULK_MIN_RECORDS
from consumer.sandbox.server import SandboxServer
from consumer.tools.demo import reconcile
from consumer.tools.warehouse.simulator import seed_sandbox, simulate
from tests.integration.group_harness import Group, split
from tests.integration.records import last_request_seq, requests_after

pytestmark = pytest.mark.kafka
SANDBOX_LATENCY_MS = 2

PARTITIONS = 2
ORDERS = 400  # ~890 events: what was never applied is long enough per partition to be listed
# (the applied third is settled from the changelog, applied_facts.py: it needs no listing)


def test_a_reset_to_earliest_settles_applied_events_from_listings_and_posts_the_rest_once(
    sandbox: SandboxServer, make_group: Callable[..., Group]
) -> None:
    sim = simulate(ORDERS, seed=4242)
    applied_first, never_applied, mixed = split(sim, len(sim.events) // 3)
    assert mixed, "some orders have events on both sides of the reset"
    with httpx2.Client(timeout=30) as client:
        seed_sandbox(sandbox.url, sim, client)
    group = make_group(PARTITIONS, sandbox.url)

    group.apply_then_reset_to_earliest(applied_first, unread=never_applied)
    seen = last_request_seq(sandbox.url)  # the reset range is read after this request
    assert min(group.end_offsets().values()) >= BULK_MIN_RECORDS

    assert group.run_member_to_the_end(180, "every record read again and settled") == 0

    result = reconcile(sandbox.url, sim)
    assert result.mismatches == [], "an event was applied twice or never"
    assert result.duplicate_events == 0
    assert result.order_violations == 0
    after = requests_after(sandbox.url, seen)
    posted = [r for r in after if r["method"] == "POST"]
    listed = [r for r in after if r["method"] == "GET" and "createdTime" in (r["query"] or "")]
    per_order = [r for r in after if r["method"] == "GET" and "orderId=" in (r["query"] or "")]
    posted_orders = {r["orderId"] for r in posted}
    assert listed, "the reset range was not listed"
    assert posted_orders <= {e.order_id for e in never_applied.events}
    assert posted_orders & mixed, "orders with events on both sides got their missing events"
    assert len(per_order) <= len(sim.events) // 50, f"{len(per_order)} per-order reads"
