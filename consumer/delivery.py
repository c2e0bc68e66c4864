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

from consumer.budget import TokenBucket
from consumer.digitalriver import DigitalRiverClient, DrResponse, TransportFailure
from consumer.errors import ConfigurationError, RetryableFailure
from consumer.events import ShipmentEvent
from consumer.fulfillments import build_request
from consumer.lanes import Batch, PendingEvent
from consumer.metrics import Metrics, ReconcileReason, RequestPurpose, RequestResult
from consumer.outcomes import (
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
from consumer.reconcile import Decision as Reconciled
from consumer.reconcile import decide, split_applied

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


@dataclass(frozen=True, slots=True)
class Halt:
    reason: str
    status: int | None


Decision = Done | TryLater | ParkOrder | Halt


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

    async def send(self, batch: Batch, attempt: int) -> Decision:  # noqa: PLR0911 - an exit per decision
        """Never raises for Digital River's answers; cancellation propagates."""
        log = _log.bind(
            partition=batch.partition, order_id=batch.order_id, offsets=list(batch.offsets)
        )
        trip = _Trip(batch.entries)
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
            outcome = self._classify(response, attempt, trip, log)
            if not isinstance(outcome, Reconcile):
                return self._decision(outcome, response, trip)
            looked = await self._look(batch, trip, attempt, "conflict")
            if not isinstance(looked, Reconciled):
                return looked
            if looked.park:  # nothing of ours is there: a real conflict
                return _park(outcome, response, trip)
            trip.follow(looked)
            if not trip.entries:
                log.info("events_already_applied", event_ids=trip.already_ids(), code=outcome.code)
                return trip.done(None)
        delay = backoff(attempt, self._policy, self._rng.random())
        return TryLater(delay, True, "conflict persisted", 409, trip.reads)

    def _classify(
        self, response: DrResponse | TransportFailure, attempt: int, trip: _Trip, log: Any
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
            event_ids=[e.event.event_id for e in trip.entries],
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
    ) -> Reconciled | TryLater | Halt:
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
            delay = exc.retry_after or backoff(attempt, self._policy, self._rng.random())
            return TryLater(
                delay, True, f"reconcile read failed: {exc.reason}", exc.status, trip.reads
            )
        self._metrics.record_dr_call("GET", 200, None, self._clock() - started)
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
