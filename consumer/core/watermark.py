"""Settled offsets of one partition -> the offset that may be committed. [pure]

Records of a partition finish out of order (many orders are in flight at once), but Kafka keeps
one committed offset per partition. `OffsetWatermark` answers: how far may we commit without
covering a record that is not settled yet (PRODUCT.md guarantee 3)?

Cost: O(1) amortized per record — a deque of tracked offsets, popped from the left while settled,
and two sets.
"""

from __future__ import annotations

from collections import deque

_REBUILD_AFTER = 64  # offsets: below this a set's table is too small to be worth rebuilding


class OffsetWatermark:
    """Tracks the offsets handed out for one partition and which of them are settled.

    Contract:
    - `track` takes offsets in strictly increasing order; gaps are fine (compaction, transaction
      markers) and never hold the watermark back.
    - `settle` marks a tracked offset done; settling twice is a no-op.
    - `committable()` is 1 + the highest tracked offset such that it and every tracked offset
      below it are settled; `None` until the first such offset exists. It never moves backwards
      and never covers an unsettled offset.
    """

    __slots__ = ("_committable", "_last_tracked", "_peak", "_settled", "_tracked", "_unsettled")

    def __init__(self) -> None:
        self._tracked: deque[int] = deque()  # tracked, not yet below the watermark
        self._unsettled: set[int] = set()
        self._settled: set[int] = set()  # settled but still in `_tracked` (behind an unsettled one)
        self._last_tracked: int | None = None
        self._committable: int | None = None
        self._peak = 0  # most offsets tracked at once since the sets were last rebuilt

    def track(self, offset: int) -> None:
        """Start tracking `offset`. Raises ValueError unless it is above every tracked offset."""
        if offset < 0:
            raise ValueError(f"offset must be >= 0, got {offset}")
        if self._last_tracked is not None and offset <= self._last_tracked:
            raise ValueError(f"offset {offset} is not above the last tracked {self._last_tracked}")
        self._last_tracked = offset
        self._tracked.append(offset)
        self._unsettled.add(offset)
        self._peak = max(self._peak, len(self._tracked))

    def settle(self, offset: int) -> None:
        """Mark `offset` settled. Idempotent; raises ValueError for an offset never tracked.

        An offset already below the committable offset is accepted as a no-op (it was settled
        earlier, or it is a gap the watermark already passed).
        """
        if offset in self._unsettled:
            self._unsettled.remove(offset)
            self._settled.add(offset)
            self._advance()
        elif offset in self._settled or offset < (self._committable or 0):
            return
        else:
            raise ValueError(f"offset {offset} was never tracked")

    def _advance(self) -> None:
        tracked, settled = self._tracked, self._settled
        while tracked and tracked[0] in settled:
            head = tracked.popleft()
            settled.remove(head)
            self._committable = head + 1
        if not tracked and self._peak > _REBUILD_AFTER:
            # everything settled: sets keep the table a backlog grew them to, new ones do not
            self._unsettled, self._settled, self._peak = set(), set(), 0

    def committable(self) -> int | None:
        """The offset to commit (Kafka's next offset to read); None while nothing is settled."""
        return self._committable

    def pending(self) -> int:
        """How many tracked offsets are not settled."""
        return len(self._unsettled)

    def oldest_unsettled(self) -> int | None:
        """The lowest unsettled offset: what holds the watermark back (None when nothing does)."""
        # `_advance` pops every settled head, so a non-empty deque starts with an unsettled offset.
        return self._tracked[0] if self._tracked else None

    def settled_ahead(self) -> frozenset[int]:
        """Settled offsets the watermark cannot pass yet (an unsettled one lies below them)."""
        return frozenset(self._settled)

    def footprint(self) -> dict[str, int]:
        """Entries held per internal structure: all 0 once every tracked offset is settled."""
        return {
            "tracked": len(self._tracked),
            "unsettled": len(self._unsettled),
            "settled": len(self._settled),
        }

    @property
    def last_tracked(self) -> int | None:
        """The highest offset tracked so far (None before the first)."""
        return self._last_tracked
