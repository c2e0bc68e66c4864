"""Headers for records sent aside: dead letters (bad input) and parked orders. [pure]

The original key, value and headers travel unchanged; these headers say what was wrong and where
the record came from, so an operator can fix and redrive it. Reasons never hold a secret: they
come from the codec's validation or from Digital River's error body.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

Headers = tuple[tuple[str, bytes], ...]

_OURS = "fc."
# set by `redrive` on records it puts back: the member treats them as possibly applied already
REDRIVEN_HEADER = "fc.redriven.at"
# the event's place in its order's sequence: the input offset where it was first consumed; kept
# across park -> redrive -> park, so a redrive puts an order's events back in their first order
POSITION_HEADER = "fc.order.position"
REDRIVE_POSITION_HEADER = "fc.redrive.position"
# on every redriven record: the parking offset up to which that redrive read the parking topic
REDRIVE_THROUGH_HEADER = "fc.redrive.through"
# on the first redriven record of each order: only that record may unpark the order
REDRIVE_FIRST_HEADER = "fc.redrive.first"
# on a redrive marker: the input offset where the order's first redriven record landed
REDRIVE_LANDED_HEADER = "fc.redrive.landed"


def _h(name: str, value: object) -> tuple[str, bytes]:
    return (name, str(value).encode("utf-8")[:4000])


def _source(topic: str, partition: int, offset: int, timestamp_ms: int | None) -> Headers:
    found = (
        _h("fc.source.topic", topic),
        _h("fc.source.partition", partition),
        _h("fc.source.offset", offset),
    )
    return found + ((_h("fc.source.timestamp", timestamp_ms),) if timestamp_ms is not None else ())


def _originals(original: Headers) -> Headers:
    # our own headers from an earlier trip aside are replaced, not stacked
    return tuple((k, v) for k, v in original if not k.startswith(_OURS))


def dead_letter_headers(
    *,
    error_class: str,
    reason: str,
    field: str | None,
    topic: str,
    partition: int,
    offset: int,
    timestamp_ms: int | None,
    failed_at_ms: int,
    original: Headers,
) -> Headers:
    own: Headers = (
        _h("fc.error.class", error_class),
        _h("fc.error.reason", reason),
        _h("fc.failed.at", failed_at_ms),
    )
    if field is not None:
        own += (_h("fc.error.field", field),)
    return _originals(original) + own + _source(topic, partition, offset, timestamp_ms)


def parking_headers(
    *,
    order_id: str,
    reason: str,
    status: int | None,
    code: str | None,
    dr_message: str | None,
    topic: str,
    partition: int,
    offset: int,
    timestamp_ms: int | None,
    parked_at_ms: int,
    original: Headers,
    position: int | None = None,
) -> Headers:
    """`position`: the event's first input offset when it was redriven before (else `offset`)."""
    own: Headers = (
        _h("fc.park.order", order_id),
        _h(POSITION_HEADER, offset if position is None else position),
        _h("fc.park.reason", reason),
        _h("fc.parked.at", parked_at_ms),
    )
    if status is not None:
        own += (_h("fc.park.status", status),)
    if code is not None:
        own += (_h("fc.park.code", code),)
    if dr_message is not None:
        own += (_h("fc.park.dr_message", dr_message),)
    return _originals(original) + own + _source(topic, partition, offset, timestamp_ms)


def header_value(headers: Headers, name: str) -> str | None:
    for key, value in headers:
        if key == name:
            return value.decode("utf-8", "replace")
    return None


class DeadLetterGuard:
    """Stops a bad deploy (a producer on a new schema, a broken validation rule) from
    dead-lettering the whole topic: `exceeded()` once more than `max_ratio` of the last `window`
    records were bad, counting at least `min_bad` bad ones. A ratio of 1 never trips."""

    def __init__(self, max_ratio: float = 0.5, window: int = 200, min_bad: int = 50) -> None:
        if not 0 < max_ratio <= 1:
            raise ValueError(f"max_ratio must be in (0, 1], got {max_ratio}")
        self.max_ratio = max_ratio
        self._window: deque[bool] = deque(maxlen=window)
        self._bad = 0
        self._min_bad = min_bad

    def record(self, bad: bool) -> None:
        if len(self._window) == self._window.maxlen and self._window[0]:
            self._bad -= 1
        self._window.append(bad)
        self._bad += bad

    def exceeded(self) -> bool:
        if self.max_ratio >= 1 or self._bad < self._min_bad:
            return False
        return self._bad > self.max_ratio * len(self._window)

    @property
    def bad_in_window(self) -> int:
        return self._bad

    @property
    def window_size(self) -> int:
        return len(self._window)


# written by `redrive` to the parking topic after it put an order's records back
REDRIVE_MARKER_HEADER = "fc.redrive.order"


@dataclass(frozen=True, slots=True)
class ParkedOrder:
    """Why an order is parked, as its parking records say; `last_offset`: the highest parking
    offset of its records known (-1: none known); `unacked`: its records on their way to the
    parking topic. A redrive that read the parking topic before them did not take them."""

    reason: str
    status: int | None
    code: str | None
    dr_message: str | None
    last_offset: int = field(default=-1, compare=False)
    unacked: int = field(default=0, compare=False)


def _int(text: str | None) -> int | None:
    return int(text) if text is not None and text.isascii() and text.isdigit() else None


def parked_orders(
    records: Iterable[tuple[int, Headers]], topic: str, partition: int, committed: int | None
) -> dict[str, ParkedOrder]:
    """The orders of `topic`/`partition` that are parked now, from the parking topic's records
    (parking offset, headers) in offset order, `committed` being the group's committed offset
    of that input partition.

    A parking record parks its order. A redrive marker releases it only when (1) no record of
    the order was parked after what that redrive read (`fc.redrive.through`): those were not
    redriven and keep it parked; and (2) the order's first redriven record, at input offset
    `fc.redrive.landed`, is below `committed`: until the member reads that record, the order's
    events still in the input topic before it park behind it instead of overtaking it."""
    parked: dict[str, ParkedOrder] = {}
    last: dict[str, int] = {}
    markers: dict[str, tuple[int, int | None]] = {}
    for offset, headers in records:
        if header_value(headers, "fc.source.topic") != topic:
            continue
        if header_value(headers, "fc.source.partition") != str(partition):
            continue
        marked = header_value(headers, REDRIVE_MARKER_HEADER)
        if marked is not None:
            through = _int(header_value(headers, REDRIVE_THROUGH_HEADER))
            landed = _int(header_value(headers, REDRIVE_LANDED_HEADER))
            markers[marked] = (offset if through is None else through, landed)
            continue
        order = header_value(headers, "fc.park.order")
        if order is None:
            continue
        last[order] = offset
        parked[order] = ParkedOrder(
            reason=header_value(headers, "fc.park.reason") or "parked",
            status=_int(header_value(headers, "fc.park.status")),
            code=header_value(headers, "fc.park.code"),
            dr_message=header_value(headers, "fc.park.dr_message"),
            last_offset=offset,
        )
    for order, (through, landed) in markers.items():
        read_back = landed is None or (committed is not None and landed < committed)
        if order in parked and last[order] <= through and read_back:
            del parked[order]
    return parked


def unparks(why: ParkedOrder, headers: Headers) -> bool:
    """Whether a redriven record (its `headers`) unparks its order parked for `why`: only the
    order's first record of a redrive that read every record of the order parked so far."""
    if header_value(headers, REDRIVE_FIRST_HEADER) is None:
        return False
    through = _int(header_value(headers, REDRIVE_THROUGH_HEADER))
    return through is not None and why.unacked == 0 and why.last_offset <= through


def redrive_marker_headers(
    *, order_id: str, topic: str, partition: int, through: int, landed: int | None
) -> Headers:
    found = (
        _h(REDRIVE_MARKER_HEADER, order_id),
        _h("fc.source.topic", topic),
        _h("fc.source.partition", partition),
        _h(REDRIVE_THROUGH_HEADER, through),
    )
    return found + ((_h(REDRIVE_LANDED_HEADER, landed),) if landed is not None else ())
