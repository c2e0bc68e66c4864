"""One batch's trip to Digital River: look first when needed, POST, read the answer. [io]

`FulfillmentSender.send(batch)` returns a `Decision` for the engine to carry out; it never
touches Kafka or the lanes. Exactly-once effect lives here (PRODUCT.md guarantee 4): a batch that
may already be at Digital River (`batch.reconcile_first`) is first compared with the order's
fulfillments and only the events not found in their metadata are posted; a 409 "already" answer
is decided by looking too, never by guessing.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from consumer.core.budget import TokenBucket
from consumer.core.errors import ConfigurationError, RetryableFailure
from consumer.core.events import ShipmentEvent
from consumer.core.fulfillments import build_request
from consumer.core.lanes import Batch, PendingEvent
from consumer.core.outcomes import (
    Applied,
    Outcome,
    Park,
    Reconcile,
    RetryLater,
    RetryPolicy,
    Stop,
    backoff,
    classify_response,
    classify_transport_failure,
)
from consumer.core.reconcile import Decision as Reconciled
from consumer.core.reconcile import decide, split_applied
from consumer.core.refusal import SplitSearch
from consumer.digitalriver.client import DigitalRiverClient, DrResponse, TransportFailure
from consumer.ops.metrics import Metrics, ReconcileReason, RequestPurpose, RequestResult

_log = structlog.get_logger("delivery")


@dataclass(frozen=True, slots=True)
class Done:
    """Every event of the batch is at Digital River: `posted` by us now, `already` found there."""

    posted: tuple[PendingEvent, ...]
    already: tuple[PendingEvent, ...]
    fulfillment_id: str | None
    reads: int


@dataclass(frozen=True, slots=True)
class TryLater:
    delay: float
    ambiguous: bool
    reason: str
    status: int | None
    reads: int


@dataclass(frozen=True, slots=True)
class ParkOrder:
    reason: str
    status: int | None
    code: str | None
    dr_message: str | None
    already: tuple[PendingEvent, ...]
    reads: int
    # applied by a split of the refused batch (refusal.py): they settle, the rest parks
    posted: tuple[PendingEvent, ...] = ()


@dataclass(frozen=True, slots=True)
class Halt:
    reason: str
    status: int | None


@dataclass(frozen=True, slots=True)
class Fenced:
    """The member's lease (lease.py) ended before a POST or before acting on a reconcile read:
    nothing was sent; the member may have lost the partition. The batch waits, reconcile-first."""

    reads: int


Decision = Done | TryLater | ParkOrder | Halt | Fenced


class _LeaseEnded(Exception):
    """Raised inside a trip when the member may no longer act for its partitions."""


@dataclass(slots=True)
class _Trip:
    """One batch's progress: what is still to post, what was found applied, reads spent."""

    entries: tuple[PendingEvent, ...]
    already: tuple[PendingEvent, ...] = ()
    reads: int = 0

    def follow(self, decision: Reconciled) -> None:
        self.already += decision.settle
        self.entries = decision.post

    def already_ids(self) -> list[str]:
        return [e.event.event_id for e in self.already]

    def done(self, fulfillment_id: str | None) -> Done:
        posted = self.entries if fulfillment_id is not None else ()
        return Done(posted, self.already, fulfillment_id, self.reads)


class FulfillmentSender:
    """Sends batches; `budget` is this member's share of the group's rate limit."""

    def __init__(
        self,
        dr: DigitalRiverClient,
        budget: TokenBucket,
        *,
        policy: RetryPolicy,
        clock: Callable[[], float],
        rng: random.Random,
        metrics: Metrics,
    ) -> None:
        self._dr = dr
        self._budget = budget
        self._policy = policy
        self._clock = clock
        self._rng = rng
        self._metrics = metrics
        self._may_act: Callable[[], bool] = lambda: True

    def fence_with(self, may_act: Callable[[], bool]) -> None:
        """`may_act()` is asked right before every POST and before a reconcile read is acted on;
        False (the member's lease ended) ends the trip with `Fenced`."""
        self._may_act = may_act

    async def send(self, batch: Batch, attempt: int) -> Decision:
        """Never raises for Digital River's answers; cancellation propagates."""
        trip = _Trip(batch.entries)
        try:
            return await self._send(batch, attempt, trip)
        except _LeaseEnded:
            _log.warning(
                "fulfillment_fenced",
                partition=batch.partition,
                order_id=batch.order_id,
                offsets=list(batch.offsets),
            )
            return Fenced(trip.reads)

    async def _send(self, batch: Batch, attempt: int, trip: _Trip) -> Decision:  # noqa: PLR0911 - an exit per decision
        log = _log.bind(
            partition=batch.partition, order_id=batch.order_id, offsets=list(batch.offsets)
        )
        if batch.reconcile_first:
            # first attempt: a record a previous owner (or a replay) may have posted
            looked = await self._look(
                batch, trip, attempt, "suspect" if attempt == 0 else "ambiguous"
            )
            if not isinstance(looked, Reconciled):
                return looked
            trip.follow(looked)
            if not trip.entries:
                log.info("events_already_applied", event_ids=trip.already_ids())
                return trip.done(None)
        for _round in range(2):  # a second round only after a 409 proved part of it applied
            response = await self._post(batch, trip.entries, attempt)
            outcome = self._classify(response, attempt, trip.entries, log)
            if isinstance(outcome, Park):
                return await self._split(batch, trip, attempt, _park(outcome, response, trip))
            if not isinstance(outcome, Reconcile):
                return self._decision(outcome, response, trip)
            looked = await self._look(batch, trip, attempt, "conflict")
            if not isinstance(looked, Reconciled):
                return looked
            if looked.park:  # nothing of ours is there: a real conflict
                return await self._split(batch, trip, attempt, _park(outcome, response, trip))
            trip.follow(looked)
            if not trip.entries:
                log.info("events_already_applied", event_ids=trip.already_ids(), code=outcome.code)
                return trip.done(None)
        delay = backoff(attempt, self._policy, self._rng.random())
        return TryLater(delay, True, "conflict persisted", 409, trip.reads)

    async def _split(self, batch: Batch, trip: _Trip, attempt: int, refused: ParkOrder) -> Decision:
        """Digital River refused `trip.entries` as one POST: find the first event that really
        fails (refusal.py); the ones before it apply, it and the order's later events park."""
        if len(trip.entries) < 2:
            return refused
        log = _log.bind(partition=batch.partition, order_id=batch.order_id)
        log.info("refused_batch_split", events=len(trip.entries), code=refused.code)
        search = SplitSearch.of_refused(trip.entries)
        fulfillment_id: str | None = None
        while not (search.culprit_found or search.finished):
            part = search.next_part()
            response = await self._post(batch, part, attempt)
            outcome = self._classify(response, attempt, part, log)
            if isinstance(outcome, Applied):
                fulfillment_id = outcome.fulfillment_id
                search = search.answered(part, applied=True)
            elif isinstance(outcome, Park) or (
                isinstance(outcome, Reconcile) and outcome.status == 409
            ):
                # nothing of this part was there (we looked after the first refusal)
                refused = _park(outcome, response, trip)
                search = search.answered(part, applied=False)
            elif isinstance(outcome, Stop):
                return self._decision(outcome, response, trip)
            else:  # ambiguous or throttled: look before posting any of it again
                delay = (
                    outcome.delay
                    if isinstance(outcome, RetryLater)
                    else backoff(attempt, self._policy, self._rng.random())
                )
                if isinstance(outcome, RetryLater) and outcome.status == 429:
                    self._budget.pause_until(self._clock() + delay)
                return TryLater(delay, True, "split interrupted", outcome.status, trip.reads)
        if search.finished:
            return Done(search.applied, trip.already, fulfillment_id, trip.reads)
        log.info(
            "refused_event_found",
            offset=search.todo[0].offset,
            event_id=search.todo[0].event.event_id,
            applied=len(search.applied),
        )
        return ParkOrder(
            refused.reason,
            refused.status,
            refused.code,
            refused.dr_message,
            trip.already,
            trip.reads,
            posted=search.applied,
        )

    def _classify(
        self,
        response: DrResponse | TransportFailure,
        attempt: int,
        entries: tuple[PendingEvent, ...],
        log: Any,
    ) -> Outcome:
        jitter = self._rng.random()
        if isinstance(response, TransportFailure):
            log.warning("fulfillment_post_failed", failure=response.kind, attempt=attempt)
            return classify_transport_failure(response.kind, attempt, self._policy, jitter)
        log.info(
            "fulfillment_posted",
            status=response.status,
            dr_request_id=response.request_id,
            upstream_id=response.upstream_id,
            event_ids=[e.event.event_id for e in entries],
            attempt=attempt,
        )
        return classify_response(
            response.status, response.body, response.retry_after, attempt, self._policy, jitter
        )

    def _decision(
        self, outcome: Outcome, response: DrResponse | TransportFailure, trip: _Trip
    ) -> Decision:
        """Every outcome but Reconcile maps straight to what the engine must do."""
        if isinstance(outcome, Applied):
            return trip.done(outcome.fulfillment_id)
        if isinstance(outcome, RetryLater):
            if outcome.status == 429:
                self._budget.pause_until(self._clock() + outcome.delay)
            return TryLater(
                outcome.delay, outcome.ambiguous, outcome.reason, outcome.status, trip.reads
            )
        if isinstance(outcome, Park):
            return _park(outcome, response, trip)
        assert isinstance(outcome, Stop)
        if outcome.status in (401, 403):
            why = (
                f"Digital River refused the key ({outcome.status} {outcome.code or outcome.reason})"
            )
            return Halt(f"{why}: check DR_API_KEY / DR_API_KEY_FILE", outcome.status)
        shape = f"{outcome.status} {outcome.code or outcome.reason}"
        return Halt(f"Digital River refuses every request of this shape ({shape})", outcome.status)

    async def _post(
        self, batch: Batch, entries: tuple[PendingEvent, ...], attempt: int
    ) -> DrResponse | TransportFailure:
        await self._take_budget()
        body = build_request(Batch(batch.partition, batch.order_id, entries))
        if not self._may_act():
            raise _LeaseEnded
        purpose: RequestPurpose = "retry" if attempt else _capture_or_cancel(entries)
        started = self._clock()
        try:
            response = await self._dr.create_fulfillment(body)
        except TransportFailure as failure:
            self._metrics.record_dr_call("POST", None, None, self._clock() - started)
            self._metrics.record_request(purpose, "failed")
            return failure
        self._metrics.record_dr_call(
            "POST", response.status, _code(response), self._clock() - started
        )
        self._metrics.record_request(purpose, _result(response.status))
        if response.status == 201:
            self._metrics.record_post_applied(len(entries))
        return response

    async def _look(
        self, batch: Batch, trip: _Trip, attempt: int, reason: ReconcileReason
    ) -> Reconciled | TryLater | ParkOrder | Halt:
        """What to settle, post or park, from the order's fulfillments at Digital River
        (`reconcile.decide`); or what to do instead when Digital River cannot tell us now."""
        await self._take_budget()
        trip.reads += 1
        self._metrics.record_reconcile_read(reason)
        started = self._clock()
        try:
            fulfillments = await self._dr.list_fulfillments(batch.order_id)
        except ConfigurationError as exc:
            self._metrics.record_dr_call("GET", 401, None, self._clock() - started)
            self._metrics.record_request("reconcile_read", "answered")
            return Halt(str(exc), None)
        except RetryableFailure as exc:
            self._metrics.record_dr_call("GET", exc.status, None, self._clock() - started)
            self._metrics.record_request("reconcile_read", _result(exc.status))
            if _read_refused(exc.status):
                # 400/404/...: Digital River will not list this order as asked, now or later
                return ParkOrder(
                    "reconcile_read_refused", exc.status, None, exc.reason, trip.already, trip.reads
                )
            delay = exc.retry_after or backoff(attempt, self._policy, self._rng.random())
            return TryLater(
                delay, True, f"reconcile read failed: {exc.reason}", exc.status, trip.reads
            )
        self._metrics.record_dr_call("GET", 200, None, self._clock() - started)
        if not self._may_act():
            raise _LeaseEnded  # a listing is only acted on by a member that still owns the order
        self._metrics.record_request("reconcile_read", "answered")
        return decide(
            split_applied(trip.entries, fulfillments), after_conflict=reason == "conflict"
        )

    async def list_page(self, params: Mapping[str, str | int]) -> dict[str, Any]:
        """One page of the fulfillments listing (bulk_reconcile.py), paid from the budget.
        Raises RetryableFailure / ConfigurationError as `DigitalRiverClient` does."""
        await self._take_budget()
        started = self._clock()
        try:
            page = await self._dr.list_fulfillments_page(params)
        except RetryableFailure as exc:
            self._metrics.record_dr_call("GET", exc.status, None, self._clock() - started)
            self._metrics.record_request("bulk_page", _result(exc.status))
            if exc.status == 429 and exc.retry_after:
                self._budget.pause_until(self._clock() + exc.retry_after)
            raise
        self._metrics.record_dr_call("GET", 200, None, self._clock() - started)
        self._metrics.record_request("bulk_page", "answered")
        return page

    async def _take_budget(self) -> None:
        while (wait := self._budget.try_take(self._clock())) > 0:
            self._metrics.add_budget_wait(wait)
            await asyncio.sleep(wait)


def _park(
    outcome: Park | Reconcile, response: DrResponse | TransportFailure, trip: _Trip
) -> ParkOrder:
    return ParkOrder(
        outcome.reason, outcome.status, outcome.code, _message(response), trip.already, trip.reads
    )


def _read_refused(status: int | None) -> bool:
    """A reconcile read answered with a 4xx that retrying cannot change (not 408 or 429)."""
    return status is not None and 400 <= status < 500 and status not in (408, 429)


def _capture_or_cancel(entries: tuple[PendingEvent, ...]) -> RequestPurpose:
    return "capture" if any(isinstance(e.event, ShipmentEvent) for e in entries) else "cancel"


def _result(status: int | None) -> RequestResult:
    if status == 201:
        return "applied"
    if status == 429:
        return "rate_limited"
    return "failed" if status is None or status == 408 or status >= 500 else "answered"


def _code(response: DrResponse) -> str | None:
    errors = response.body.get("errors") if response.body is not None else None
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        code = errors[0].get("code")
        return str(code) if code is not None else None
    return None


def _message(response: DrResponse | TransportFailure) -> str | None:
    if isinstance(response, TransportFailure) or response.body is None:
        return None
    errors = response.body.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        message = errors[0].get("message")
        return str(message) if message is not None else None
    return None
