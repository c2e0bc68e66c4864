"""What a partition's next owner must know about the records past the committed offset. [pure]

The committed offset only covers a contiguous settled prefix, but records past it are in three
different states (docs/budget.md, "A tight dispatch horizon"):

- `s` settled: applied at Digital River (or proven applied, parked, dead-lettered): the next
  owner settles them without a request;
- `u` unsure: handed to a POST that has not settled: the next owner reconciles them first;
- `n` never dispatched: the next owner posts them as usual.

`DispatchLog` is that classification as runs from the committed offset (`start`); offsets past
the last run are `n`, offsets below `start` (read again only after a seek back) are `u`. It is
written into the commit's metadata (`r=` field, e.g. `s12u3n40s1`) before any record it marks
`u` is posted, so a member killed at any moment leaves a log that covers everything it may have
posted. `encode` keeps the text short by coarsening: a short `s` or `n` run between others turns
into `u` (a read instead of a skip or a plain post: never a double capture, never a miss).
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Final, Literal, TypeAlias

Kind: TypeAlias = Literal["s", "u", "n"]
SETTLED: Final[Kind] = "s"
UNSURE: Final[Kind] = "u"
NEVER: Final[Kind] = "n"
DEFAULT_MAX_CHARS: Final = 600
_KINDS: Final[dict[str, Kind]] = {"s": SETTLED, "u": UNSURE, "n": NEVER}
_RUN = re.compile(r"([sun])([0-9]{1,12})")


class DispatchLog:
    """Immutable runs of kinds from `start`. `kind_at` is O(log runs)."""

    __slots__ = ("_ends", "_kinds", "start")

    def __init__(self, start: int, runs: Iterable[tuple[Kind, int]] = ()) -> None:
        if start < 0:
            raise ValueError(f"start must be >= 0, got {start}")
        self.start = start
        kinds: list[Kind] = []
        ends: list[int] = []
        at = start
        for kind, length in runs:
            if length <= 0:
                continue
            at += length
            if kinds and kinds[-1] == kind:
                ends[-1] = at
            else:
                kinds.append(kind)
                ends.append(at)
        while kinds and kinds[-1] == NEVER:  # implicit past the end
            kinds.pop()
            ends.pop()
        self._kinds = tuple(kinds)
        self._ends = tuple(ends)

    # -- building -------------------------------------------------------------------------
    @classmethod
    def unsure_range(cls, start: int, stop: int) -> DispatchLog:
        """Everything in [start, stop) unsure: the log of an older or a coarser owner."""
        return cls(start, [(UNSURE, stop - start)])

    @classmethod
    def overlay(cls, start: int, base: DispatchLog, own: Mapping[int, Kind]) -> DispatchLog:
        """`base` from `start` on, with the kinds in `own` (offset -> kind) taking precedence."""
        points = sorted(o for o in own if o >= start)
        segments: list[tuple[int, int | None, Kind]] = []
        if start < base.start:
            segments.append((start, base.start, UNSURE))  # what base cannot speak for
        segments += base.intervals(start)
        segments.append((max(start, base.stop), None, NEVER))
        runs: list[tuple[Kind, int]] = []
        at = start
        i = 0
        for _, end, kind in segments:
            while i < len(points) and (end is None or points[i] < end):
                p = points[i]
                if p > at:
                    runs.append((kind, p - at))
                runs.append((own[p], 1))
                at = p + 1
                i += 1
            if end is not None and end > at:
                runs.append((kind, end - at))
                at = end
        return cls(start, runs)

    # -- reading --------------------------------------------------------------------------
    @property
    def stop(self) -> int:
        """1 + the last offset that is not `n` (the horizon older readers understand)."""
        return self._ends[-1] if self._ends else self.start

    def kind_at(self, offset: int) -> Kind:
        if offset < self.start:
            return UNSURE
        i = bisect.bisect_right(self._ends, offset)
        return self._kinds[i] if i < len(self._kinds) else NEVER

    def intervals(self, start: int | None = None) -> Iterator[tuple[int, int, Kind]]:
        """[a, b, kind) runs from max(start, self.start) on (offsets below self.start skipped)."""
        at = self.start
        low = self.start if start is None else max(start, self.start)
        for end, kind in zip(self._ends, self._kinds, strict=True):
            if end > low:
                yield max(at, low), end, kind
            at = end

    def count(self, kind: Kind) -> int:
        return sum(b - a for a, b, k in self.intervals() if k == kind)

    def runs(self) -> list[tuple[Kind, int]]:
        return [(k, b - a) for a, b, k in self.intervals()]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DispatchLog):
            return NotImplemented
        return self.start == other.start and self.runs() == other.runs()

    def __hash__(self) -> int:
        return hash((self.start, self._ends, self._kinds))

    def __repr__(self) -> str:
        return f"DispatchLog({self.start}, {self.text()!r})"

    # -- text -----------------------------------------------------------------------------
    def text(self) -> str:
        return "".join(f"{k}{n}" for k, n in self.runs())

    def encode(self, max_chars: int = DEFAULT_MAX_CHARS) -> str:
        """The runs as text of at most `max_chars`, coarsened when needed: each `s`/`n` run that
        becomes `u` is one more read for the next owner, never a skipped or doubled record."""
        text = self.text()
        if len(text) <= max_chars:
            return text
        lengths = sorted({n for k, n in self.runs() if k != UNSURE})
        low, high = 0, len(lengths)  # convert every non-u run of length <= lengths[i]
        best = DispatchLog.unsure_range(self.start, self.stop).text()
        while low < high:
            mid = (low + high) // 2
            candidate = self._coarsened(lengths[mid]).text()
            if len(candidate) <= max_chars:
                best, high = candidate, mid
            else:
                low = mid + 1
        return best

    def _coarsened(self, threshold: int) -> DispatchLog:
        runs = self.runs()
        out = [
            (UNSURE if k != UNSURE and n <= threshold and 0 < i < len(runs) - 1 else k, n)
            for i, (k, n) in enumerate(runs)
        ]
        return DispatchLog(self.start, out)

    @classmethod
    def decode(cls, start: int, text: str) -> DispatchLog | None:
        """The log `encode` wrote for a commit at `start`; None when the text is garbled."""
        runs: list[tuple[Kind, int]] = []
        at = 0
        for match in _RUN.finditer(text):
            if match.start() != at:
                return None
            runs.append((_KINDS[match.group(1)], int(match.group(2))))
            at = match.end()
        if at != len(text):
            return None
        return cls(start, runs)
