"""What a batch's decision does to its partition: lanes, attempts, parking, settling. [pure]

A trip ends in a decision (decisions.py); the engine carries it out in two steps:

- `effects_of(decision, batch, ...)` says, as a value, what must change;
- `carry_out(effects, state, batch, attempt)` makes the in-memory part of it on the partition
  (its lanes, the order's attempt count, the order's parked mark) and returns the events that
  must go to the parking topic. What needs IO (recording the settlement in the changelog, then
  settling its offsets; producing the parked records; stopping the member) is the engine's.

    Applied     the batch leaves its lane; every event settles (applied / already / duplicate)
    Park        the batch leaves its lane; what Digital River has settles, the rest of the batch
                and every later pending event of the order park; the order is marked parked
    RetryLater  the batch goes back to the front of its lane until `now + delay`; a failure of
                the order counts an attempt (a 429 does not: it is about our pace)
    Fenced      back to its lane for `fenced_wait` seconds, marked to look first
    Stop        back to its lane for ever; the member stops (`halt`)

Time comes in as `now`; nothing here logs or does IO.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypeAlias, TypeVar

from consumer.core.deadletters import ParkedOrder
from consumer.core.decisions import Applied, Fenced, Park, RetryLater, Stop, TripDecision
from consumer.core.lanes import Batch, PendingEvent
from consumer.core.partition import PartitionState

R = TypeVar("R")
AttemptChange: TypeAlias = Literal["forget", "count", "keep"]


@dataclass(frozen=True, slots=True)
class Settlement:
    """Events Digital River has: record `event_ids` in the changelog first (a committed event
    is always in it), then settle the offsets. `applied`: posted by this trip; `already_applied`:
    found there; `duplicate`: found there and flagged by the dedupe filter (a republished event).
    """

    event_ids: tuple[str, ...]
    event_offsets: tuple[int, ...]  # the offset of each of `event_ids`, in the same order
    applied: tuple[int, ...]
    already_applied: tuple[int, ...]
    duplicate: tuple[int, ...]

    @property
    def offsets(self) -> tuple[int, ...]:
        return self.applied + self.already_applied + self.duplicate


@dataclass(frozen=True, slots=True)
class Effects:
    """What one decision changes. `retry_at` None: the batch leaves its lane (settled or
    parked); else it goes back to the front of its lane, held until then (`ambiguous`: the next
    batch looks first). `park` (with `parked`, why): the batch's events that park; every later
    pending event of the order parks after them. `posts`: POSTs that applied something."""

    settle: Settlement | None
    retry_at: float | None
    ambiguous: bool
    attempts: AttemptChange
    park: tuple[PendingEvent, ...]
    parked: ParkedOrder | None
    halt: str | None
    posts: int


def effects_of(
    decision: TripDecision,
    batch: Batch,
    *,
    duplicates: frozenset[str],
    now: float,
    fenced_wait: float,
) -> Effects:
    """The effects of `batch`'s `decision`; `duplicates`: event ids of the batch the dedupe
    filter flagged as applied before (they settle as `duplicate` when found at Digital River)."""
    if isinstance(decision, Applied | Park):
        settled = decision.posted + decision.already
        settlement = _settlement(decision.posted, decision.already, duplicates) if settled else None
        posts = 1 if decision.posted else 0
        if isinstance(decision, Applied):
            return Effects(settlement, None, False, "forget", (), None, None, posts)
        done = {e.offset for e in settled}
        rest = tuple(e for e in batch.entries if e.offset not in done)
        why = ParkedOrder(decision.reason, decision.status, decision.code, decision.message)
        return Effects(settlement, None, False, "forget", rest, why, None, posts)
    if isinstance(decision, RetryLater):
        # being told to slow down is no failure of this order
        attempts: AttemptChange = "keep" if decision.status == 429 else "count"
        return Effects(None, now + decision.delay, decision.ambiguous, attempts, (), None, None, 0)
    if isinstance(decision, Fenced):
        return Effects(None, now + fenced_wait, True, "keep", (), None, None, 0)
    assert isinstance(decision, Stop)
    return Effects(None, float("inf"), False, "keep", (), None, decision.describe(), 0)


def _settlement(
    posted: tuple[PendingEvent, ...], already: tuple[PendingEvent, ...], duplicates: frozenset[str]
) -> Settlement:
    return Settlement(
        event_ids=tuple(e.event.event_id for e in posted + already),
        event_offsets=tuple(e.offset for e in posted + already),
        applied=tuple(e.offset for e in posted),
        already_applied=tuple(e.offset for e in already if e.event.event_id not in duplicates),
        duplicate=tuple(e.offset for e in already if e.event.event_id in duplicates),
    )


def carry_out(
    effects: Effects, state: PartitionState[R], batch: Batch, attempt: int
) -> tuple[PendingEvent, ...]:
    """Make `effects` on `state` (the batch's attempt was number `attempt`); the events to send
    to the parking topic, in offset order: the batch's, then the order's later pending ones."""
    order_id = batch.order_id
    if effects.attempts == "forget":
        state.attempts.pop(order_id, None)
    elif effects.attempts == "count":
        state.attempts[order_id] = attempt + 1
    if effects.retry_at is None:
        state.lanes.complete(batch)
    else:
        state.lanes.retry(batch, effects.retry_at, ambiguous=effects.ambiguous)
    if effects.parked is None:
        return ()
    state.parked[order_id] = effects.parked
    return effects.park + tuple(state.lanes.take_order(order_id))
