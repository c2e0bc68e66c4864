"""Headers for records sent aside: dead letters (bad input) and parked orders. [pure]

The original key, value and headers travel unchanged; these headers say what was wrong and where
the record came from, so an operator can fix and redrive it. Reasons never hold a secret: they
come from the codec's validation or from Digital River's error body.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

Headers = tuple[tuple[str, bytes], ...]

_OURS = "fc."
# set by `redrive` on records it puts back: the member treats them as possibly applied already
REDRIVEN_HEADER = "fc.redriven.at"


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
) -> Headers:
    own: Headers = (
        _h("fc.park.order", order_id),
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
    """Why an order is parked, as its parking records say."""

    reason: str
    status: int | None
    code: str | None
    dr_message: str | None


def parked_orders(
    records: Iterable[tuple[bytes | None, Headers]], topic: str, partition: int
) -> dict[str, ParkedOrder]:
    """The orders of `topic`/`partition` that are parked now, from the parking topic's records
    (key, headers) in offset order: parked by a parking record, released by a redrive marker."""
    parked: dict[str, ParkedOrder] = {}
    for _key, headers in records:
        if header_value(headers, "fc.source.topic") != topic:
            continue
        if header_value(headers, "fc.source.partition") != str(partition):
            continue
        released = header_value(headers, REDRIVE_MARKER_HEADER)
        if released is not None:
            parked.pop(released, None)
            continue
        order = header_value(headers, "fc.park.order")
        if order is None:
            continue
        status = header_value(headers, "fc.park.status")
        parked[order] = ParkedOrder(
            reason=header_value(headers, "fc.park.reason") or "parked",
            status=int(status) if status is not None and status.isdigit() else None,
            code=header_value(headers, "fc.park.code"),
            dr_message=header_value(headers, "fc.park.dr_message"),
        )
    return parked


def redrive_marker_headers(*, order_id: str, topic: str, partition: int) -> Headers:
    return (
        _h(REDRIVE_MARKER_HEADER, order_id),
        _h("fc.source.topic", topic),
        _h("fc.source.partition", partition),
    )
