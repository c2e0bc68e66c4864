"""Bulk reconciliation: a listing by createdTime settles what is applied and misses nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from consumer.core.bulk_reconcile import (
    CLOCK_SKEW_MS,
    PAGE_SIZE,
    Coverage,
    FulfillmentListing,
    classify,
    iso_ms,
    window_start,
)

BASE_MS = 1_764_000_000_000


class FakeDigitalRiver:
    """GET /fulfillments?createdTime[gte]=&limit=&startingAfter=, newest first, as the contract."""

    def __init__(self) -> None:
        self.fulfillments: list[dict[str, Any]] = []
        self.pages = 0

    def create(self, created_ms: int, event_ids: list[str]) -> None:
        n = len(self.fulfillments)
        self.fulfillments.append(
            {
                "id": f"ful_{n}",
                "createdTime": iso_ms(created_ms),
                "metadata": {"fc_events_0": ",".join(event_ids)},
                "_ms": created_ms,
            }
        )

    async def page(self, params: Mapping[str, str | int]) -> Mapping[str, Any]:
        self.pages += 1
        since = datetime.fromisoformat(str(params["createdTime[gte]"]).replace("Z", "+00:00"))
        matching = [
            f
            for f in reversed(self.fulfillments)
            if datetime.fromisoformat(f["createdTime"].replace("Z", "+00:00")) >= since
        ]
        start = 0
        if "startingAfter" in params:
            start = [f["id"] for f in matching].index(params["startingAfter"]) + 1
        limit = int(params["limit"])
        return {"data": matching[start : start + limit], "hasMore": start + limit < len(matching)}


records = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=3_600_000),  # produced at (ms after BASE)
        st.one_of(st.none(), st.integers(min_value=0, max_value=600_000)),  # applied after (ms)
    ),
    min_size=1,
    max_size=150,
)


@given(records)
def test_a_listing_from_the_oldest_record_finds_every_applied_event_and_invents_none(
    plan: list[tuple[int, int | None]],
) -> None:
    dr = FakeDigitalRiver()
    applied: set[str] = set()
    for i, (produced, delay) in sorted(enumerate(plan), key=lambda x: x[1][0] + (x[1][1] or 0)):
        if delay is not None:
            dr.create(BASE_MS + produced + delay, [f"e{i}"])
            applied.add(f"e{i}")
    since = window_start((BASE_MS + produced for produced, _ in plan), BASE_MS)
    coverage = asyncio.run(FulfillmentListing().extend(dr.page, since, BASE_MS + 10**8))
    for i, (produced, _) in enumerate(plan):
        verdict = classify(f"e{i}", BASE_MS + produced, coverage)
        assert verdict != "uncertain"  # the window reaches every record
        assert (verdict == "applied") == (f"e{i}" in applied)
    assert dr.pages == max(1, -(-len(applied) // PAGE_SIZE))


def test_records_older_than_the_window_or_without_a_time_are_read_per_order() -> None:
    coverage = Coverage(since_ms=BASE_MS, applied=frozenset({"found"}))
    assert classify("found", None, coverage) == "applied"
    assert classify("other", None, coverage) == "uncertain"
    assert classify("other", BASE_MS, coverage) == "uncertain"  # within the skew of the window
    assert classify("other", BASE_MS + CLOCK_SKEW_MS, coverage) == "clear"


def test_a_second_listing_reads_only_what_was_created_since_the_first_began() -> None:
    dr = FakeDigitalRiver()
    for i in range(250):
        dr.create(BASE_MS + i * 1000, [f"old{i}"])
    listing = FulfillmentListing()
    first_start = BASE_MS + 10**7
    asyncio.run(listing.extend(dr.page, BASE_MS - CLOCK_SKEW_MS, first_start))
    assert dr.pages == 3
    dr.create(first_start + 5000, ["new"])
    coverage = asyncio.run(listing.extend(dr.page, BASE_MS - CLOCK_SKEW_MS, first_start + 9000))
    assert dr.pages == 4  # one page: what was created since (less the overlap)
    assert coverage.since_ms == BASE_MS - CLOCK_SKEW_MS
    assert {"old0", "old249", "new"} <= coverage.applied


def test_a_listing_reaching_further_back_than_the_last_one_starts_over() -> None:
    dr = FakeDigitalRiver()
    dr.create(BASE_MS, ["a"])
    listing = FulfillmentListing()
    asyncio.run(listing.extend(dr.page, BASE_MS + 1000, BASE_MS + 5000))
    coverage = asyncio.run(listing.extend(dr.page, BASE_MS - 1000, BASE_MS + 6000))
    assert coverage.since_ms == BASE_MS - 1000
    assert "a" in coverage.applied


def test_the_window_starts_at_the_oldest_record_less_the_skew() -> None:
    assert window_start([BASE_MS + 5, None, BASE_MS + 2], 0) == BASE_MS + 2 - CLOCK_SKEW_MS
    assert window_start([None], BASE_MS) == BASE_MS - CLOCK_SKEW_MS
    assert iso_ms(BASE_MS + 999) == "2025-11-24T16:00:00Z"
