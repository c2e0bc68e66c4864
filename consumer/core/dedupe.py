"""Which event ids were applied recently: a compact, time-windowed filter. [pure]

Warehouse producers are at-least-once: the same `eventId` can arrive again in the same batch,
minutes or days later, on another member or after a restart (PRODUCT.md guarantee 4). The exact
record of what Digital River has is the fulfillments' metadata (`fulfillments.event_ids_of`);
this module is the cheap question in front of it. `SeenFilter.might_contain(event_id)`:

- False: the event was not applied within the window: post it (the happy path reads nothing);
- True: maybe it was (a duplicate, or a false positive: about n / 2**32 with n ids held): the
  batch is reconciled with the order's fulfillments before posting, so a false positive costs
  one read, never a skipped capture.

There are no false negatives for an id added within the window (`window_ms`). The filter keeps a
32-bit fingerprint per id, in sorted arrays (4 bytes per id, binary search), one set of arrays per
slice of the window ("generation", dropped whole when it leaves the window): a member holds
millions of recent ids in a few MB, and memory is bounded by what was applied within the window,
not by orders. It is rebuilt after a restart or a takeover from the changelog topic
(`changelog.py`).

Time comes in as milliseconds since the epoch (`now_ms`, `at_ms`); nothing here reads a clock.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import chain
from typing import Final

GENERATIONS: Final = 8
FINGERPRINT_BITS: Final = 32
BUFFER: Final = 1024  # fingerprints kept in a set before they join the sorted runs
_MASK: Final = (1 << FINGERPRINT_BITS) - 1


def fingerprint(event_id: str) -> int:
    """32 bits of the event id's hash. Python's string hash is salted per process, which is
    fine: a member rebuilds its filters from the event ids in the changelog, never stores these.
    Two ids share a fingerprint with probability 2**-32 per pair: with n ids held, a new id is a
    false positive with probability about n / 2**32 (0.02% at a million)."""
    return hash(event_id) & _MASK


@dataclass(slots=True)
class _Generation:
    """The fingerprints of one slice of the window: sorted runs of 4-byte integers whose sizes
    halve from the first (merged like a log-structured tree: O(log n) per add, amortized), and a
    small set of the newest."""

    runs: list[array[int]] = field(default_factory=list)
    recent: set[int] = field(default_factory=set)

    def add(self, fp: int) -> None:
        self.recent.add(fp)
        if len(self.recent) >= BUFFER:
            self.settle()

    def settle(self) -> None:
        """Move the newest fingerprints into the sorted runs."""
        if not self.recent:
            return
        run = array("I", sorted(self.recent))
        self.recent.clear()
        while self.runs and len(self.runs[-1]) <= 2 * len(run):
            run = array("I", sorted(chain(self.runs.pop(), run)))  # timsort merges two runs
        self.runs.append(run)

    def contains(self, fp: int) -> bool:
        if fp in self.recent:
            return True
        for run in self.runs:
            at = bisect_left(run, fp)
            if at < len(run) and run[at] == fp:
                return True
        return False

    @property
    def nbytes(self) -> int:
        return sum(run.itemsize * len(run) for run in self.runs) + 8 * len(self.recent)

    @property
    def count(self) -> int:
        return sum(len(run) for run in self.runs) + len(self.recent)


class SeenFilter:
    """Event ids applied within the last `window_ms`, probabilistically (see the module doc).

    Contract: after `add(id, at_ms)`, `might_contain(id, now_ms)` is True for every
    `now_ms <= at_ms + window_ms`; an id is forgotten at the latest `window_ms` plus one
    generation after it was added. `expire(now_ms)` frees the generations wholly older than the
    window; `add` and `might_contain` call it.
    """

    def __init__(self, window_ms: int, generations: int = GENERATIONS) -> None:
        if window_ms < 1:
            raise ValueError(f"window_ms must be >= 1, got {window_ms}")
        if generations < 2:
            raise ValueError(f"generations must be >= 2, got {generations}")
        self.window_ms = window_ms
        self._span = max(1, -(-window_ms // (generations - 1)))  # ceil
        self._generations: dict[int, _Generation] = {}
        self._oldest_kept = -(1 << 62)

    def add(self, event_id: str, at_ms: int) -> None:
        """Remember `event_id` as applied at `at_ms` (ignored when already outside the window)."""
        key = at_ms // self._span
        if key < self._oldest_kept:
            return
        generation = self._generations.get(key)
        if generation is None:
            generation = self._generations[key] = _Generation()
        generation.add(fingerprint(event_id))

    def add_all(self, event_ids: Iterable[str], at_ms: int) -> None:
        for event_id in event_ids:
            self.add(event_id, at_ms)

    def settle(self) -> None:
        """Compact what was just added (after a restore): memory is then 4 bytes per id."""
        for generation in self._generations.values():
            generation.settle()

    def might_contain(self, event_id: str, now_ms: int) -> bool:
        """False: not applied within the window. True: maybe (look at Digital River)."""
        self.expire(now_ms)
        fp = fingerprint(event_id)
        return any(g.contains(fp) for g in self._generations.values())

    def expire(self, now_ms: int) -> None:
        oldest = (now_ms - self.window_ms) // self._span
        if oldest <= self._oldest_kept:
            return
        self._oldest_kept = oldest
        for key in [k for k in self._generations if k < oldest]:
            del self._generations[key]

    @property
    def nbytes(self) -> int:
        """Bytes of filter bits held (the Python objects around them add a few hundred)."""
        return sum(g.nbytes for g in self._generations.values())

    @property
    def count(self) -> int:
        """Ids added and not yet expired (an id added twice counts twice)."""
        return sum(g.count for g in self._generations.values())


# -- the changelog record: which events of one order a partition applied ---------------------

CHANGELOG_PREFIX: Final = b"fc1:"


def encode_applied(event_ids: Iterable[str]) -> bytes:
    """The changelog value naming `event_ids` (event ids never hold a comma: validation)."""
    return CHANGELOG_PREFIX + ",".join(event_ids).encode("ascii")


def decode_applied(value: bytes | None) -> tuple[str, ...]:
    """The event ids a changelog value names; () for a value that is not ours."""
    if not value or not value.startswith(CHANGELOG_PREFIX):
        return ()
    text = value[len(CHANGELOG_PREFIX) :].decode("ascii", "replace")
    return tuple(part for part in text.split(",") if part)


OFFSETS_HEADER: Final = "fc.offsets"
"""Changelog header: the source offsets of the value's event ids, in the same order. Records
written before it existed have none (their ids still feed the filter; `applied_facts.py`)."""


def encode_offsets(offsets: Iterable[int]) -> bytes:
    return ",".join(str(o) for o in offsets).encode("ascii")


def decode_offsets(value: bytes | None) -> tuple[int, ...] | None:
    """The offsets a header names; None when absent or not ours (never a partial list)."""
    if not value:
        return None
    try:
        offsets = tuple(int(part) for part in value.decode("ascii").split(","))
    except ValueError:
        return None
    return offsets if all(o >= 0 for o in offsets) else None
