"""One batch's trip to Digital River: look first when needed, POST, read the answer. [io]

`FulfillmentSender.send(batch)` returns a `Trip`: the batch's decision (decisions.py: Applied,
RetryLater, Park, Stop or Fenced) and the reads it spent, for the engine to carry out
(settle.py); it never touches Kafka or the lanes. Exactly-once effect lives here (PRODUCT.md
guarantee 4): a batch that may already be at Digital River (`batch.reconcile_first`) is first
compared with the order's fulfillments and only the events not found in their metadata are
posted; a 409 "already" answer is decided by looking too, never by guessing (reconcile.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from consumer.core.budget import TokenBucket
from consumer.core.decisions import (
    Answer,
    Applied,
    Fenced,
    Park,
    Reconcile,
    RetryLater,
    Stop,
    TripDecision,
)
from consumer.core.errors import ConfigurationError, LeaseEnded, RetryableFailure, TransportFailure
from consumer.core.events import ShipmentEvent
from consumer.core.fulfillments import build_request
from consumer.core.lanes import Batch, PendingEvent
from consumer.core.outcomes import (
    ErrorBody,
    RetryPolicy,
    backoff,
    classify_read_failure,
    classify_response,
    classify_transport_failure,
)
from consumer.core.reconcile import ReconcileResult, decide, split_applied
from consumer.core.refusal import SplitSearch
from consumer.digitalriver.client import DigitalRiverClient, DrResponse
from consumer.ops.metrics import Metrics, ReconcileReason, RequestPurpose, RequestResult

_log = structlog.get_logger("delivery")


@dataclass(frozen=True, slots=True)
class Trip:
    """How one batch's trip ended: its decision, and the reconcile reads it spent."""

    decision: TripDecision
    reads: int = 0


@dataclass(slots=True)
class _Progress:
    """One batch's progress: what is still to post, what was found applied, reads spent."""

    entries: tuple[PendingEvent, ...]
    already: tuple[PendingEvent, ...] = ()
    reads: int = 0

    def follow(self, looked: ReconcileResult) -> None:
        """Settle what the look found applied; post only the rest."""
        self.already += looked.applied
        self.entries = looked.remaining

    def already_ids(self) -> list[str]:
        return [e.event.event_id for e in self.already]

    def applied(self, fulfillment_id: str | None) -> Applied:
        posted = self.entries if fulfillment_id is not None else ()
        return Applied(fulfillment_id, posted, self.already)

    def parked(self, park: Park, posted: tuple[PendingEvent, ...] = ()) -> Park:
        return dataclasses.replace(park, posted=posted, already=self.already)


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
        False (the member's lease ended) ends the trip `Fenced`."""
        self._may_act = may_act

    async def send(self, batch: Batch, attempt: int) -> Trip:
        """Never raises for Digital River's answers; cancellation propagates."""
        progress = _Progress(batch.entries)
        try:
            decision = await self._send(batch, attempt, progress)
        except LeaseEnded:
            _log.warning(
                "fulfillment_fenced",
                partition=batch.partition,
                order_id=batch.order_id,
                offsets=list(batch.offsets),
            )
            decision = Fenced()
        return Trip(decision, progress.reads)

    async def _send(  # noqa: PLR0911 - an exit per decision
        self, batch: Batch, attempt: int, progress: _Progress
    ) -> TripDecision:
        log = _log.bind(
            partition=batch.partition, order_id=batch.order_id, offsets=list(batch.offsets)
        )
        if batch.reconcile_first:
            # first attempt: a record a previous owner (or a replay) may have posted
            looked = await self._look(
                batch, progress, attempt, "suspect" if attempt == 0 else "ambiguous"
            )
            if not isinstance(looked, ReconcileResult):
                return looked
            progress.follow(looked)
            if not progress.entries:
                log.info("events_already_applied", event_ids=progress.already_ids())
                return progress.applied(None)
        for _round in range(2):  # a second round only after a 409 proved part of it applied
            response = await self._post(batch, progress.entries, attempt)
            answer = self._classify(response, attempt, progress.entries, log)
            if isinstance(answer, Park):
                return await self._split(batch, progress, attempt, answer)
            if not isinstance(answer, Reconcile):
                return self._answered(answer, progress)
            looked = await self._look(batch, progress, attempt, "conflict")
            if not isinstance(looked, ReconcileResult):
                return looked
            decided = decide(looked, answer)
            if isinstance(decided, Park):  # nothing of ours is there: a real conflict
                return await self._split(batch, progress, attempt, decided)
            progress.follow(decided)
            if not progress.entries:
                log.info(
                    "events_already_applied", event_ids=progress.already_ids(), code=answer.code
                )
                return progress.applied(None)
        delay = backoff(attempt, self._policy, self._rng.random())
        return RetryLater(delay, True, "conflict_persisted", 409, False)

    async def _split(
        self, batch: Batch, progress: _Progress, attempt: int, refused: Park
    ) -> TripDecision:
        """Digital River refused `progress.entries` as one POST: find the first event that
        really fails (refusal.py); the ones before it apply, it and the order's later events
        park."""
        if len(progress.entries) < 2:
            return progress.parked(refused)
        log = _log.bind(partition=batch.partition, order_id=batch.order_id)
        log.info("refused_batch_split", events=len(progress.entries), code=refused.code)
        search = SplitSearch.of_refused(progress.entries)
        fulfillment_id: str | None = None
        while not (search.culprit_found or search.finished):
            part = search.next_part()
            response = await self._post(batch, part, attempt)
            answer = self._classify(response, attempt, part, log)
            if isinstance(answer, Applied):
                fulfillment_id = answer.fulfillment_id
                search = search.answered(part, applied=True)
            elif isinstance(answer, Park):
                refused = answer
                search = search.answered(part, applied=False)
            elif isinstance(answer, Reconcile) and answer.status == 409:
                # nothing of this part was there (we looked after the first refusal)
                refused = answer.unexplained()
                search = search.answered(part, applied=False)
            elif isinstance(answer, Stop):
                return answer
            else:  # ambiguous or throttled: look before posting any of it again
                return self._interrupted(answer, attempt)
        if search.finished:
            return Applied(fulfillment_id, search.applied, progress.already)
        log.info(
            "refused_event_found",
            offset=search.todo[0].offset,
            event_id=search.todo[0].event.event_id,
            applied=len(search.applied),
        )
        return progress.parked(refused, posted=search.applied)

    def _interrupted(self, answer: RetryLater | Reconcile, attempt: int) -> RetryLater:
        """A split stopped by an answer that settles nothing: what of it was sent is unknown."""
        if isinstance(answer, Reconcile):  # a 201 without an id: nothing says Digital River is down
            delay = backoff(attempt, self._policy, self._rng.random())
            return RetryLater(delay, True, "split_interrupted", answer.status, False)
        if answer.status == 429:
            self._budget.pause_until(self._clock() + answer.delay)
        return RetryLater(answer.delay, True, "split_interrupted", answer.status, answer.systemic)

    def _classify(
        self,
        response: DrResponse | TransportFailure,
        attempt: int,
        entries: tuple[PendingEvent, ...],
        log: Any,
    ) -> Answer:
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

    def _answered(self, answer: Applied | RetryLater | Stop, progress: _Progress) -> TripDecision:
        """An answer that needs no look ends the trip as it is (a 429 also pauses the budget)."""
        if isinstance(answer, Applied):
            return progress.applied(answer.fulfillment_id)
        if isinstance(answer, RetryLater) and answer.status == 429:
            self._budget.pause_until(self._clock() + answer.delay)
        return answer

    async def _post(
        self, batch: Batch, entries: tuple[PendingEvent, ...], attempt: int
    ) -> DrResponse | TransportFailure:
        await self._take_budget()
        body = build_request(Batch(batch.partition, batch.order_id, entries))
        if not self._may_act():
            raise LeaseEnded(order_id=batch.order_id, partition=batch.partition)
        purpose: RequestPurpose = "retry" if attempt else _capture_or_cancel(entries)
        started = self._clock()
        try:
            response = await self._dr.create_fulfillment(body)
        except TransportFailure as failure:
            self._metrics.record_dr_call("POST", None, None, self._clock() - started)
            self._metrics.record_request(purpose, "failed")
            return failure
        code = ErrorBody.of(response.body).code
        self._metrics.record_dr_call("POST", response.status, code, self._clock() - started)
        self._metrics.record_request(purpose, _result(response.status))
        if response.status == 201:
            self._metrics.record_post_applied(len(entries))
        return response

    async def _look(
        self, batch: Batch, progress: _Progress, attempt: int, reason: ReconcileReason
    ) -> ReconcileResult | RetryLater | Park | Stop:
        """Which of `progress.entries` the order's fulfillments at Digital River already name;
        or what to do instead when Digital River cannot tell us now."""
        await self._take_budget()
        progress.reads += 1
        self._metrics.record_reconcile_read(reason)
        started = self._clock()
        try:
            fulfillments = await self._dr.list_fulfillments(batch.order_id)
        except ConfigurationError as exc:
            self._metrics.record_dr_call("GET", exc.status, None, self._clock() - started)
            self._metrics.record_request("reconcile_read", "answered")
            return Stop("forbidden" if exc.status == 403 else "unauthorized", exc.status, None)
        except RetryableFailure as exc:
            self._metrics.record_dr_call("GET", exc.status, exc.code, self._clock() - started)
            self._metrics.record_request("reconcile_read", _result(exc.status))
            where = {"partition": batch.partition, "order_id": batch.order_id}
            _log.warning("reconcile_read_failed", error=str(exc), **{**where, **exc.context()})
            failed = classify_read_failure(exc, attempt, self._policy, self._rng.random())
            return progress.parked(failed) if isinstance(failed, Park) else failed
        self._metrics.record_dr_call("GET", 200, None, self._clock() - started)
        if not self._may_act():
            # a listing is only acted on by a member that still owns the order
            raise LeaseEnded(order_id=batch.order_id, partition=batch.partition)
        self._metrics.record_request("reconcile_read", "answered")
        return split_applied(progress.entries, fulfillments)

    async def list_page(self, params: Mapping[str, str | int]) -> dict[str, Any]:
        """One page of the fulfillments listing (bulk_reconcile.py), paid from the budget.
        Raises RetryableFailure / ConfigurationError as `DigitalRiverClient` does."""
        await self._take_budget()
        started = self._clock()
        try:
            page = await self._dr.list_fulfillments_page(params)
        except RetryableFailure as exc:
            self._metrics.record_dr_call("GET", exc.status, exc.code, self._clock() - started)
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


def _capture_or_cancel(entries: tuple[PendingEvent, ...]) -> RequestPurpose:
    return "capture" if any(isinstance(e.event, ShipmentEvent) for e in entries) else "cancel"


def _result(status: int | None) -> RequestResult:
    if status == 201:
        return "applied"
    if status == 429:
        return "rate_limited"
    return "failed" if status is None or status == 408 or status >= 500 else "answered"
