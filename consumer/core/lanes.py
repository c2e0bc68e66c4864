"""Per-order FIFO lanes inside one partition, with coalescing. [pure]

Every record of a partition lands in its order's lane. `PartitionLanes` hands out `Batch`es:
at most one in flight per order (PRODUCT.md guarantee 1), each the leading run of the order's
pending events that coalesce into one fulfillment with the same result (guarantee 2), orders
served oldest-first by their head offset so the partition's watermark keeps moving. A slow or
held order never blocks the others.

Time comes in as `now` (monotonic seconds); nothing here sleeps, logs or does IO.
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass

from consumer.core.events import FulfillmentEvent, ShipmentEvent, Tracking

_REBUILD_AFTER = 64  # orders: below this a dict's table is too small to be worth rebuilding


@dataclass(frozen=True, slots=True)
class PendingEvent:
    """One decoded record waiting for Digital River: its offset and its event."""

    offset: int
    event: FulfillmentEvent


@dataclass(frozen=True, slots=True)
class Batch:
    """Consecutive events of one order that go to Digital River as one fulfillment.

    `reconcile_first` is True when some of these events may already be at Digital River (an
    earlier ambiguous attempt, or records a previous owner of the partition may have posted):
    the engine must look at the order's fulfillments before posting.
    """

    partition: int
    order_id: str
    entries: tuple[PendingEvent, ...]
    reconcile_first: bool = False

    @property
    def offsets(self) -> tuple[int, ...]:
        return tuple(entry.offset for entry in self.entries)

    @property
    def event_ids(self) -> tuple[str, ...]:
        return tuple(entry.event.event_id for entry in self.entries)

    @property
    def events(self) -> tuple[FulfillmentEvent, ...]:
        return tuple(entry.event for entry in self.entries)

    @property
    def first_offset(self) -> int:
        return self.entries[0].offset

    @property
    def last_offset(self) -> int:
        return self.entries[-1].offset


@dataclass(frozen=True, slots=True)
class CoalescingPolicy:
    """How many events one batch may carry; 1 disables coalescing."""

    max_events: int

    def __post_init__(self) -> None:
        if self.max_events < 1:
            raise ValueError(f"max_events must be >= 1, got {self.max_events}")


def tracking_of(event: FulfillmentEvent) -> Tracking | None:
    """The event's tracking triple, or None (cancellations and untracked shipments)."""
    if isinstance(event, ShipmentEvent) and not event.tracking.is_empty:
        return event.tracking
    return None


def leading_run(entries: deque[PendingEvent], policy: CoalescingPolicy) -> int:
    """How many events from the front of `entries` coalesce into one fulfillment.

    Shipments and cancellations mix freely (quantities are summed per line, shipped and cancelled
    side by side); a batch carries at most one tracking triple, so a shipment whose tracking
    differs from the batch's starts the next batch; never more than `policy.max_events`. An
    event whose eventId the run already carries (a producer's duplicate) is never summed with
    its original: it starts the next batch, which is checked against what was applied.
    """
    tracking: Tracking | None = None
    seen: set[str] = set()
    count = 0
    for entry in entries:
        if count >= policy.max_events or entry.event.event_id in seen:
            break
        seen.add(entry.event.event_id)
        own = tracking_of(entry.event)
        if own is not None:
            if tracking is not None and own != tracking:
                break
            tracking = own
        count += 1
    return count


class PartitionLanes:
    """The per-order lanes of one partition.

    Contract:
    - `add` appends an event to its order's lane (offsets increase within the partition).
    - `next_batches(now, limit)` returns up to `limit` batches, one per ready order — an order is
      ready when it has pending events, no batch in flight and no hold later than `now` — oldest
      head offset first. Each returned batch is in flight until `complete` or `retry`.
    - `complete(batch)`: the batch is settled (applied, proven applied, parked or dead-lettered).
    - `retry(batch, not_before)`: not settled; its events go back to the front of the lane and the
      order waits until `not_before`. `ambiguous=True` marks the order so its next batch says
      `reconcile_first`.
    - `take_order(order_id)` removes every pending (not in-flight) event of an order, for parking.
    Misuse (completing a batch that is not in flight) raises ValueError.
    """

    def __init__(self, partition: int, policy: CoalescingPolicy) -> None:
        self.partition = partition
        self.policy = policy
        self._lanes: dict[str, deque[PendingEvent]] = {}
        self._in_flight: dict[str, Batch] = {}
        self._held: dict[str, float] = {}
        # order -> highest offset that may already be at Digital River; cleared once a batch
        # reaching it settles, so every suspect event is looked up, not only the first batch's
        self._suspect: dict[str, int] = {}
        # heaps of (head offset, order) and (not_before, order); stale entries are skipped lazily
        self._ready: list[tuple[int, str]] = []
        self._holds: list[tuple[float, str]] = []
        self._pending = 0
        self._peak_orders = 0  # most orders known at once since the containers were last rebuilt

    # -- feeding ---------------------------------------------------------------------------
    def add(self, offset: int, event: FulfillmentEvent, *, suspect: bool = False) -> None:
        """Queue `event`; `suspect=True` when a previous owner may have posted it already."""
        order_id = event.order_id
        lane = self._lanes.get(order_id)
        if lane is None:
            lane = self._lanes[order_id] = deque()
            self._peak_orders = max(self._peak_orders, len(self._lanes) + len(self._in_flight))
        lane.append(PendingEvent(offset, event))
        self._pending += 1
        if suspect:
            self._suspect[order_id] = offset
        if len(lane) == 1:
            self._make_ready(order_id)

    # -- handing out -----------------------------------------------------------------------
    def next_batches(self, now: float, limit: int) -> list[Batch]:
        """Up to `limit` batches of distinct ready orders, oldest head offset first."""
        self._release_holds(now)
        batches: list[Batch] = []
        while len(batches) < limit and self._ready:
            head, order_id = heapq.heappop(self._ready)
            if not self._is_ready_at(order_id, head):
                continue
            batches.append(self._start(order_id))
        return batches

    def _start(self, order_id: str) -> Batch:
        lane = self._lanes[order_id]
        entries = tuple(lane.popleft() for _ in range(leading_run(lane, self.policy)))
        if not lane:
            del self._lanes[order_id]
        self._pending -= len(entries)
        suspect_to = self._suspect.get(order_id)
        reconcile = suspect_to is not None and entries[0].offset <= suspect_to
        batch = Batch(self.partition, order_id, entries, reconcile_first=reconcile)
        self._in_flight[order_id] = batch
        return batch

    # -- settling --------------------------------------------------------------------------
    def complete(self, batch: Batch) -> None:
        """`batch` is settled; its order may be handed out again."""
        self._finish(batch)
        if self._suspect.get(batch.order_id, -1) <= batch.last_offset:
            self._suspect.pop(batch.order_id, None)
        self._make_ready(batch.order_id)
        self._shrink_if_idle()

    def retry(self, batch: Batch, not_before: float, *, ambiguous: bool = False) -> None:
        """`batch` was not applied: back to the front of its lane, order held until `not_before`."""
        self._finish(batch)
        order_id = batch.order_id
        lane = self._lanes.get(order_id)
        if lane is None:
            lane = self._lanes[order_id] = deque()
        lane.extendleft(reversed(batch.entries))
        self._pending += len(batch.entries)
        if ambiguous:
            self._suspect[order_id] = max(self._suspect.get(order_id, -1), batch.last_offset)
        self._held[order_id] = not_before
        heapq.heappush(self._holds, (not_before, order_id))

    def mark_reconciled(self, order_id: str) -> None:
        """The engine looked at Digital River: the order's next batch need not reconcile first."""
        self._suspect.pop(order_id, None)

    def take_order(self, order_id: str) -> list[PendingEvent]:
        """Remove and return the order's pending events in offset order (not an in-flight batch)."""
        lane = self._lanes.pop(order_id, None)
        self._held.pop(order_id, None)
        if order_id not in self._in_flight:
            self._suspect.pop(order_id, None)  # nothing of the order is left here to reconcile
        taken = [] if lane is None else list(lane)
        self._pending -= len(taken)
        self._shrink_if_idle()
        return taken

    def _finish(self, batch: Batch) -> None:
        if self._in_flight.get(batch.order_id) is not batch:
            raise ValueError(f"batch of {batch.order_id} at {batch.first_offset} is not in flight")
        del self._in_flight[batch.order_id]

    def _shrink_if_idle(self) -> None:
        """Once no order is pending or in flight, drop what a backlog left behind: heap entries
        that can only be stale, and dict tables sized for the backlog (CPython never shrinks a
        dict's table when its keys are deleted)."""
        if self._lanes or self._in_flight:
            return
        self._ready = []
        if not self._held:
            self._holds = []
        if self._peak_orders > _REBUILD_AFTER:
            self._lanes, self._in_flight = {}, {}
            self._held, self._suspect = dict(self._held), dict(self._suspect)
        self._peak_orders = 0

    # -- readiness -------------------------------------------------------------------------
    def _make_ready(self, order_id: str) -> None:
        lane = self._lanes.get(order_id)
        if lane and order_id not in self._in_flight and order_id not in self._held:
            heapq.heappush(self._ready, (lane[0].offset, order_id))

    def _is_ready_at(self, order_id: str, head: int) -> bool:
        lane = self._lanes.get(order_id)
        return (
            lane is not None
            and lane[0].offset == head
            and order_id not in self._in_flight
            and order_id not in self._held
        )

    def _release_holds(self, now: float) -> None:
        while self._holds and self._holds[0][0] <= now:
            not_before, order_id = heapq.heappop(self._holds)
            if self._held.get(order_id) == not_before:
                del self._held[order_id]
                self._make_ready(order_id)

    def has_work_ready(self, now: float) -> bool:
        """Whether `next_batches(now, 1)` would return a batch."""
        self._release_holds(now)
        while self._ready:
            head, order_id = self._ready[0]
            if self._is_ready_at(order_id, head):
                return True
            heapq.heappop(self._ready)
        return False

    def next_ready_time(self) -> float | None:
        """The earliest time a held order becomes ready again (None when no order is held)."""
        while self._holds:
            not_before, order_id = self._holds[0]
            if self._held.get(order_id) == not_before:
                return not_before
            heapq.heappop(self._holds)
        return None

    # -- counts ----------------------------------------------------------------------------
    @property
    def in_flight(self) -> int:
        """Batches handed out and neither completed nor retried."""
        return len(self._in_flight)

    @property
    def pending(self) -> int:
        """Events waiting in lanes (not in flight)."""
        return self._pending

    @property
    def orders_with_pending(self) -> int:
        return len(self._lanes)

    def footprint(self) -> dict[str, int]:
        """Entries held in each internal structure: all 0 once every order is settled."""
        return {
            "lanes": len(self._lanes),
            "in_flight": len(self._in_flight),
            "held": len(self._held),
            "suspect": len(self._suspect),
            "ready_heap": len(self._ready),
            "holds_heap": len(self._holds),
            "pending": self._pending,
        }

    def in_flight_batches(self) -> list[Batch]:
        """The batches currently out, oldest first (for revoke and shutdown)."""
        return sorted(self._in_flight.values(), key=lambda batch: batch.first_offset)
