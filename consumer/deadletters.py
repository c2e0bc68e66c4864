"""Headers for records sent aside: dead letters (bad input) and parked orders. [pure]

The original key, value and headers travel unchanged; these headers say what was wrong and where
the record came from, so an operator can fix and redrive it. Reasons never hold a secret: they
come from the codec's validation or from Digital River's error body.
"""

from __future__ import annotations

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
