"""Headers on records sent aside: what was wrong, where the record came from, originals kept."""

from __future__ import annotations

from collections import Counter
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from consumer.deadletters import (
    DeadLetterGuard,
    Headers,
    ParkedOrder,
    dead_letter_headers,
    header_value,
    parked_orders,
    parking_headers,
    redrive_marker_headers,
)

ORIGINAL: Headers = (("traceparent", b"00-abc-def-01"), ("producer", b"wms-7"))


def dead_letter(**overrides: Any) -> Headers:
    options: dict[str, Any] = {
        "error_class": "invalid_event",
        "reason": "quantity must be at least 1",
        "field": "lines[0].quantity",
        "topic": "warehouse.fulfillment-events",
        "partition": 7,
        "offset": 12345,
        "timestamp_ms": 1_700_000_000_123,
        "failed_at_ms": 1_700_000_009_000,
        "original": ORIGINAL,
    }
    options.update(overrides)
    return dead_letter_headers(**options)


def parked(**overrides: Any) -> Headers:
    options: dict[str, Any] = {
        "order_id": "ord_42",
        "reason": "Digital River refused the request",
        "status": 409,
        "code": "quantity_too_large",
        "dr_message": "Quantity exceeds the remaining quantity of item itm_1.",
        "topic": "warehouse.fulfillment-events",
        "partition": 3,
        "offset": 99,
        "timestamp_ms": 1_700_000_000_500,
        "parked_at_ms": 1_700_000_001_000,
        "original": ORIGINAL,
    }
    options.update(overrides)
    return parking_headers(**options)


def names(headers: Headers) -> Counter[str]:
    return Counter(name for name, _ in headers)


def test_dead_letter_headers_say_what_was_wrong() -> None:
    headers = dead_letter()
    assert header_value(headers, "fc.error.class") == "invalid_event"
    assert header_value(headers, "fc.error.reason") == "quantity must be at least 1"
    assert header_value(headers, "fc.error.field") == "lines[0].quantity"
    assert header_value(headers, "fc.failed.at") == "1700000009000"


def test_dead_letter_headers_say_where_the_record_came_from() -> None:
    headers = dead_letter()
    assert header_value(headers, "fc.source.topic") == "warehouse.fulfillment-events"
    assert header_value(headers, "fc.source.partition") == "7"
    assert header_value(headers, "fc.source.offset") == "12345"
    assert header_value(headers, "fc.source.timestamp") == "1700000000123"


def test_a_dead_letter_without_a_field_or_timestamp_has_no_such_header() -> None:
    headers = dead_letter(field=None, timestamp_ms=None)
    assert header_value(headers, "fc.error.field") is None
    assert header_value(headers, "fc.source.timestamp") is None
    assert header_value(headers, "fc.source.offset") == "12345"


def test_the_original_headers_are_kept_first_and_unchanged() -> None:
    for headers in (dead_letter(), parked()):
        assert headers[: len(ORIGINAL)] == ORIGINAL


def test_repeated_original_headers_are_all_kept() -> None:
    original: Headers = (("hop", b"1"), ("hop", b"2"))
    headers = dead_letter(original=original)
    assert [value for name, value in headers if name == "hop"] == [b"1", b"2"]


def test_our_headers_from_an_earlier_dead_letter_are_replaced_not_stacked() -> None:
    first = dead_letter(reason="first reason", offset=1)
    second = dead_letter(reason="second reason", field=None, offset=2, original=first)
    counts = names(second)
    assert all(count == 1 for name, count in counts.items() if name.startswith("fc."))
    assert header_value(second, "fc.error.reason") == "second reason"
    assert header_value(second, "fc.source.offset") == "2"
    assert header_value(second, "fc.error.field") is None, "the old field went with the old error"
    assert second[: len(ORIGINAL)] == ORIGINAL


def test_a_parked_record_sent_to_the_dead_letter_topic_loses_its_parking_headers() -> None:
    headers = dead_letter(original=parked())
    assert not any(name.startswith("fc.park") for name in names(headers))
    assert header_value(headers, "traceparent") == "00-abc-def-01"


def test_parking_headers_carry_the_order_and_digital_rivers_answer() -> None:
    headers = parked()
    assert header_value(headers, "fc.park.order") == "ord_42"
    assert header_value(headers, "fc.park.reason") == "Digital River refused the request"
    assert header_value(headers, "fc.park.status") == "409"
    assert header_value(headers, "fc.park.code") == "quantity_too_large"
    assert header_value(headers, "fc.park.dr_message") == (
        "Quantity exceeds the remaining quantity of item itm_1."
    )
    assert header_value(headers, "fc.parked.at") == "1700000001000"


def test_parking_headers_say_where_the_record_came_from() -> None:
    headers = parked()
    assert header_value(headers, "fc.source.topic") == "warehouse.fulfillment-events"
    assert header_value(headers, "fc.source.partition") == "3"
    assert header_value(headers, "fc.source.offset") == "99"
    assert header_value(headers, "fc.source.timestamp") == "1700000000500"


def test_a_parking_without_an_http_answer_has_no_status_code_or_message() -> None:
    headers = parked(status=None, code=None, dr_message=None)
    for name in ("fc.park.status", "fc.park.code", "fc.park.dr_message"):
        assert header_value(headers, name) is None
    assert header_value(headers, "fc.park.order") == "ord_42"


def test_parking_again_replaces_the_earlier_parking_headers() -> None:
    again = parked(code="order_cancelled", offset=100, original=parked())
    assert all(count == 1 for name, count in names(again).items() if name.startswith("fc."))
    assert header_value(again, "fc.park.code") == "order_cancelled"
    assert header_value(again, "fc.source.offset") == "100"


def test_header_values_are_utf8_bytes_and_read_back_as_text() -> None:
    headers = dead_letter(reason="état invalide: ünïcode")
    assert ("fc.error.reason", "état invalide: ünïcode".encode()) in headers
    assert header_value(headers, "fc.error.reason") == "état invalide: ünïcode"


def test_a_very_long_reason_is_cut_to_a_bounded_header() -> None:
    headers = dead_letter(reason="x" * 100_000)
    value = header_value(headers, "fc.error.reason")
    assert value is not None
    assert 0 < len(value.encode()) <= 4000


def test_header_value_of_a_missing_header_is_none() -> None:
    assert header_value(ORIGINAL, "fc.error.reason") is None


def test_header_value_returns_the_first_of_repeated_headers() -> None:
    assert header_value((("a", b"1"), ("a", b"2")), "a") == "1"


def test_the_dead_letter_guard_trips_when_most_recent_records_are_bad() -> None:
    guard = DeadLetterGuard(max_ratio=0.5, window=10, min_bad=3)
    for bad in (False, True, False, True, False):
        guard.record(bad)
    assert not guard.exceeded()  # 2 bad: under the minimum
    for _ in range(4):
        guard.record(True)
    assert guard.exceeded()  # 6 of 9


def test_the_dead_letter_guard_forgets_bad_records_that_left_its_window() -> None:
    guard = DeadLetterGuard(max_ratio=0.5, window=4, min_bad=1)
    for bad in (True, True, True, False, False, False, False):
        guard.record(bad)
    assert guard.bad_in_window == 0
    assert not guard.exceeded()


@given(st.lists(st.booleans(), max_size=300))
def test_the_guard_counts_exactly_the_bad_records_in_its_window(stream: list[bool]) -> None:
    guard = DeadLetterGuard(max_ratio=0.5, window=20, min_bad=5)
    for bad in stream:
        guard.record(bad)
    tail = stream[-20:]
    assert guard.bad_in_window == sum(tail)
    assert guard.exceeded() == (sum(tail) >= 5 and sum(tail) > 0.5 * len(tail))


def test_a_ratio_of_one_never_trips() -> None:
    guard = DeadLetterGuard(max_ratio=1.0, window=5, min_bad=1)
    for _ in range(10):
        guard.record(True)
    assert not guard.exceeded()


def _parking(order: str, partition: int, code: str = "quantity_too_large") -> Headers:
    return parking_headers(
        order_id=order,
        reason="conflict",
        status=409,
        code=code,
        dr_message="too many",
        topic="events",
        partition=partition,
        offset=7,
        timestamp_ms=None,
        parked_at_ms=1,
        original=(),
    )


def test_parked_orders_are_rebuilt_from_the_parking_records_of_that_source_partition() -> None:
    records = [
        (b"ord_a", _parking("ord_a", 0)),
        (b"ord_b", _parking("ord_b", 1)),
        (b"ord_c", _parking("ord_c", 0, code="item_cancelled")),
    ]
    parked = parked_orders(records, "events", 0)
    assert sorted(parked) == ["ord_a", "ord_c"]
    assert parked["ord_a"] == ParkedOrder("conflict", 409, "quantity_too_large", "too many")


def test_a_redrive_marker_releases_an_order_until_it_is_parked_again() -> None:
    marker = redrive_marker_headers(order_id="ord_a", topic="events", partition=0)
    assert parked_orders([(b"ord_a", _parking("ord_a", 0)), (b"ord_a", marker)], "events", 0) == {}
    again = [(b"ord_a", _parking("ord_a", 0)), (b"ord_a", marker), (b"ord_a", _parking("ord_a", 0))]
    assert list(parked_orders(again, "events", 0)) == ["ord_a"]


def test_records_of_another_topic_do_not_park_anything() -> None:
    assert parked_orders([(b"ord_a", _parking("ord_a", 0))], "other-topic", 0) == {}
