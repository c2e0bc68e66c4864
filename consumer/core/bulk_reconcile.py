"""Reconcile a long range of suspect records with pages of 100, not one read per order.

When a member takes over many records that may already be at Digital River — a replay, offsets
moved by `kafka-consumer-groups --reset-offsets` (a commit with no metadata of ours), a takeover
of a long unsure range — it lists Digital River's fulfillments created since the oldest of those
records was produced (`GET /fulfillments?createdTime[gte]=...&limit=100`, newest first, paged
with `startingAfter`) and collects every event id their metadata names (`fulfillments.
event_ids_of`). A fulfillment carrying an event cannot have been created before the event's record
was produced, so (allowing `CLOCK_SKEW_MS` between the producer's and Digital River's clocks) the
listing sees every application of the records it covers, as of when it started:

- found: applied; settled without a request;
- not found, covered: not applied when the listing started; posted as usual (nobody else posts a
  partition's records while this member owns it);
- not covered (no timestamp, or produced before the window): reconciled per order, as before.

`classify` is the pure rule; `FulfillmentListing` accumulates listings: a later one starts where
the last began (less `LISTING_OVERLAP_MS`), so a second takeover costs only the pages created since.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Literal, TypeAlias

from consumer.core.fulfillments import event_ids_of

CLOCK_SKEW_MS: Final = 5 * 60 * 1000
"""Producer clocks (record timestamps) against Digital River's (createdTime): generous."""
LISTING_OVERLAP_MS: Final = 60 * 1000
"""A later listing re-reads this much before the previous one began: our clock against Digital
River's (both servers; NTP keeps them within far less), and createdTime's whole seconds."""
HOLD_SECONDS: Final = 2.0
"""How long a listing waits for every partition it serves to have read its first record."""
PAGE_SIZE: Final = 100
BULK_MIN_RECORDS: Final = 200
"""Unsure records in one partition from which a listing beats per-order reads."""

Verdict: TypeAlias = Literal["applied", "clear", "uncertain"]
Page = Callable[[Mapping[str, str | int]], Awaitable[Mapping[str, Any]]]


@dataclass(frozen=True, slots=True)
class Coverage:
    """What a finished listing proves: every event applied at Digital River by a fulfillment
    created at or after `since_ms` (wall-clock ms) and before the listing began."""

    since_ms: int
    applied: frozenset[str]


def classify(event_id: str, timestamp_ms: int | None, coverage: Coverage) -> Verdict:
    """[pure] One suspect record against a finished listing."""
    if event_id in coverage.applied:
        return "applied"
    if timestamp_ms is None or timestamp_ms - CLOCK_SKEW_MS < coverage.since_ms:
        return "uncertain"
    return "clear"


def window_start(timestamps: Iterable[int | None], fallback_ms: int) -> int:
    """[pure] The createdTime lower bound a listing must reach for these records."""
    known = [t for t in timestamps if t is not None]
    return max(0, (min(known) if known else fallback_ms) - CLOCK_SKEW_MS)


def iso_ms(ms: int) -> str:
    """Wall-clock ms as the ISO-8601 UTC text Digital River filters on (whole seconds, floored)."""
    return datetime.fromtimestamp(ms // 1000, UTC).isoformat().replace("+00:00", "Z")


@dataclass
class FulfillmentListing:
    """Listings of one member, merged. Not thread-safe: the engine's event loop only."""

    applied: set[str] = field(default_factory=set)
    since_ms: int | None = None  # oldest createdTime every listing so far reached
    last_started_ms: int | None = None  # wall clock when the newest listing began
    pages: int = 0

    async def extend(self, page: Page, since_ms: int, now_ms: int) -> Coverage:
        """List what is needed so that the coverage reaches back to `since_ms` as of `now_ms`.

        Only fulfillments created since the previous listing began (less the skew) are fetched
        again when that one already reached back far enough. Raises what `page` raises (a
        retryable failure or a configuration error); nothing is merged from a listing that failed.
        """
        fetch_from, merged_since = since_ms, since_ms
        earlier = self.since_ms
        started = self.last_started_ms
        if earlier is not None and started is not None and since_ms >= earlier:
            # the earlier listings reach back far enough: fetch only what is newer
            fetch_from = max(since_ms, started - LISTING_OVERLAP_MS)
            if fetch_from <= started:  # contiguous with what they covered
                merged_since = earlier
        self.applied |= await _list(page, fetch_from, self)
        self.since_ms = merged_since
        self.last_started_ms = now_ms
        return Coverage(self.since_ms, frozenset(self.applied))


async def _list(page: Page, since_ms: int, listing: FulfillmentListing) -> set[str]:
    found: set[str] = set()
    params: dict[str, str | int] = {"createdTime[gte]": iso_ms(since_ms), "limit": PAGE_SIZE}
    while True:
        body = await page(params)
        listing.pages += 1
        data = body.get("data") or []
        for fulfillment in data:
            if isinstance(fulfillment, Mapping):
                found |= event_ids_of(fulfillment)
        if not body.get("hasMore") or not data:
            return found
        params["startingAfter"] = str(data[-1]["id"])
