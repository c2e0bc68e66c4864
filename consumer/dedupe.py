"""Which event ids were applied recently: a compact, time-windowed filter. [pure]

Warehouse producers are at-least-once: the same `eventId` can arrive again in the same batch,
minutes or days later, on another member or after a restart (PRODUCT.md guarantee 4). The exact
record of what Digital River has is the fulfillments' metadata (`fulfillments.event_ids_of`);
this module is the cheap question in front of it. `SeenFilter.might_contain(event_id)`:

- False: the event was not applied within the window: post it (the happy path reads nothing);
- True: maybe it was (a duplicate, or a false positive at about `FALSE_POSITIVE_RATE`): the
  batch is reconciled with the order's fulfillments before posting, so a false positive costs
  one read, never a skipped capture.

There are no false negatives for an id added within the window (`window_ms`). The filter is a
ring of Bloom filters, one per slice of the window ("generation"), each growing by blocks that
double in size: about 2 bytes per event, so a member holds millions of recent ids in a few MB,
and memory stays bounded by what was applied within the window, not by orders. It is rebuilt
after a restart or a takeover from the changelog topic (`changelog.py`).

Time comes in as milliseconds since the epoch (`now_ms`, `at_ms`); nothing here reads a clock.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

BITS_PER_EVENT: Final = 16
HASHES: Final = 11
FIRST_BLOCK_EVENTS: Final = 1024
GENERATIONS: Final = 8
FALSE_POSITIVE_RATE: Final = 0.0005  # per filled block, at 16 bits and 11 hashes per event
_MASK64: Final = (1 << 64) - 1


def _hashes(event_id: str) -> tuple[int, int]:
    digest = hashlib.blake2b(event_id.encode("utf-8"), digest_size=16).digest()
    return int.from_bytes(digest[:8], "little"), int.from_bytes(digest[8:], "little") | 1


@dataclass(slots=True)
class _Block:
    """One Bloom filter for up to `capacity` events (a power of two)."""

    capacity: int
    bits: bytearray = field(init=False)
    count: int = 0

    def __post_init__(self) -> None:
        self.bits = bytearray(self.capacity * BITS_PER_EVENT // 8)

    def _positions(self, h1: int, h2: int) -> Iterable[int]:
        mask = self.capacity * BITS_PER_EVENT - 1
        return (((h1 + i * h2) & _MASK64) & mask for i in range(HASHES))

    def add(self, h1: int, h2: int) -> None:
        bits = self.bits
        for p in self._positions(h1, h2):
            bits[p >> 3] |= 1 << (p & 7)
        self.count += 1

    def contains(self, h1: int, h2: int) -> bool:
        bits = self.bits
        return all(bits[p >> 3] & (1 << (p & 7)) for p in self._positions(h1, h2))


@dataclass(slots=True)
class _Generation:
    blocks: list[_Block] = field(default_factory=lambda: [_Block(FIRST_BLOCK_EVENTS)])

    def add(self, h1: int, h2: int) -> None:
        last = self.blocks[-1]
        if last.count >= last.capacity:
            last = _Block(last.capacity * 2)
            self.blocks.append(last)
        last.add(h1, h2)

    def contains(self, h1: int, h2: int) -> bool:
        return any(block.contains(h1, h2) for block in self.blocks)

    @property
    def nbytes(self) -> int:
        return sum(len(block.bits) for block in self.blocks)

    @property
    def count(self) -> int:
        return sum(block.count for block in self.blocks)


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
        generation.add(*_hashes(event_id))

    def add_all(self, event_ids: Iterable[str], at_ms: int) -> None:
        for event_id in event_ids:
            self.add(event_id, at_ms)

    def might_contain(self, event_id: str, now_ms: int) -> bool:
        """False: not applied within the window. True: maybe (look at Digital River)."""
        self.expire(now_ms)
        h1, h2 = _hashes(event_id)
        return any(g.contains(h1, h2) for g in self._generations.values())

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
