"""Bulk reconciliation: one fulfillment listing for every partition with a long unsure range. [io]

A new owner that inherits many unsure records (partition.py `bulk_held`) holds them, in offset
order, until a listing of Digital River's fulfillments begun after its assignment covers them;
then each held record is routed again, now against that listing (bulk_reconcile.py decides what
the listing proves). One listing runs at a time per member and serves every partition waiting.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

import structlog

from consumer.core.bulk_reconcile import (
    HOLD_SECONDS,
    FulfillmentListing,
    Page,
    iso_ms,
    window_start,
)
from consumer.core.errors import ConfigurationError, RetryableFailure
from consumer.kafka.records import SourceRecord
from consumer.member.holdings import EngineStats, Holdings, State

_log = structlog.get_logger("engine")
HOUSEKEEPING_SECONDS = 1.0
Route = Callable[[State, SourceRecord, Any], None]  # a decoded record, routed (engine._route)


class BulkLister:
    """Starts listings (`start`, every pass of the loop), hands held records back to `route`
    once one is done, and forgets a listing no partition needs any more (`forget_finished`).
    `refused(reason)` is called when Digital River refuses our key (the member stops)."""

    def __init__(
        self,
        held: Holdings,
        stats: EngineStats,
        list_page: Page,  # FulfillmentSender.list_page
        *,
        route: Route,
        dispatch: Callable[[], None],
        refused: Callable[[str], None],
        clock: Callable[[], float],
    ) -> None:
        self._held = held
        self._stats = stats
        self._list_page = list_page
        self._route = route
        self._dispatch = dispatch
        self._refused = refused
        self._clock = clock
        self.listing = FulfillmentListing()  # merged over every listing since it was last empty
        self.task: asyncio.Task[None] | None = None
        self._not_before = 0.0
        self._hold_until: float | None = None
        self._next_housekeeping = 0.0

    async def finish(self, states: Sequence[State], timeout: float) -> None:
        """Before `states` go: a listing some of them hold records for is awaited (bounded), so
        what it proves applied is settled first and the next owner inherits a shorter range."""
        task = self.task
        if task is not None and any(ps.bulk_held for ps in states):
            await asyncio.wait([task], timeout=timeout)

    def forget_finished(self) -> None:
        """Once a second: a listing's event ids are needed only until every inherited unsure
        record of its partitions has been routed: then they go, and with no partition left
        waiting for or using a listing, the merged listing starts afresh (memory follows the
        unsure)."""
        now = self._clock()
        if now < self._next_housekeeping:
            return
        self._next_housekeeping = now + HOUSEKEEPING_SECONDS
        partitions = self._held.partitions.values()
        for ps in partitions:
            routed = ps.watermark.last_tracked
            done = routed is not None and routed + 1 >= ps.inherited.stop
            if ps.bulk_coverage is not None and done:
                ps.bulk_coverage = None
            if done:
                ps.facts = None  # the changelog's exact facts served the inherited range
        busy = any(ps.bulk_coverage is not None or ps.bulk_held is not None for ps in partitions)
        if not busy and self.task is None and self.listing.applied:
            self.listing = FulfillmentListing()

    def start(self) -> None:
        """Partitions holding records for a listing get one (one at a time per member), begun
        now: after their assignment, so it sees whatever their previous owner posted."""
        if self.task is not None:
            return
        if self._clock() < self._not_before:
            return
        waiting = [ps for ps in self._held.partitions.values() if ps.bulk_held is not None]
        if not any(ps.bulk_held for ps in waiting):
            self._hold_until = None
            return
        if any(self._clock() < ps.listing_not_before for ps in waiting):
            return  # a previous owner's POST may still land (reconcile.listing_not_before)
        # one listing for every partition that needs one: wait (briefly) until each has read
        # its first record, whose timestamp bounds the window
        now = self._clock()
        if self._hold_until is None:
            self._hold_until = now + HOLD_SECONDS
        if now < self._hold_until and not all(ps.bulk_held for ps in waiting):
            return
        self._hold_until = None
        now_ms = int(time.time() * 1000)
        since = window_start(
            (r.timestamp_ms for ps in waiting for r, _ in ps.bulk_held or ()), now_ms
        )
        self.task = asyncio.create_task(self._list(waiting, since, now_ms))

    async def _list(self, waiting: list[State], since_ms: int, now_ms: int) -> None:
        pages_before = self.listing.pages
        try:
            coverage = await self.listing.extend(self._list_page, since_ms, now_ms)
        except ConfigurationError as exc:
            self.task = None
            self._refused(str(exc))
            return
        except RetryableFailure as exc:
            self.task = None
            self._not_before = self._clock() + (exc.retry_after or 1.0)
            _log.warning("fulfillment_listing_failed", error=str(exc))
            return
        self.task = None
        pages = self.listing.pages - pages_before
        self._stats.reads += pages
        _log.info(
            "fulfillments_listed",
            since=iso_ms(coverage.since_ms),
            pages=pages,
            events_found=len(coverage.applied),
            partitions=sorted(ps.partition for ps in waiting),
        )
        for ps in waiting:
            if not self._held.owns(ps) or ps.bulk_held is None:
                continue
            held, ps.bulk_held = ps.bulk_held, None
            ps.bulk_coverage = coverage
            for record, event in held:
                self._route(ps, record, event)  # against `coverage` now, in offset order
        self._dispatch()
