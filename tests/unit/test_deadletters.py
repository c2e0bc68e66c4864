"""Headers on records sent aside: what was wrong, where the record came from, originals kept."""

from __future__ import annotations

from collections import Counter
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from consumer.core.deadletters import (
    REDRIVE_FIRST_HEADER,
    REDRIVE_THROUGH_HEADER,
    REDRIVEN_HEADER,
    DeadLetterGuard,
    Headers,
    ParkedOrder,
    dead_letter_headers,
    header_value,
    parked_orders,
    parking_headers,
    redrive_marker_headers,
    unparks,
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
        (0, _parking("ord_a", 0)),
        (1, _parking("ord_b", 1)),
        (2, _parking("ord_c", 0, code="item_cancelled")),
    ]
    parked = parked_orders(records, "events", 0, committed=10)
    assert sorted(parked) == ["ord_a", "ord_c"]
    assert parked["ord_a"] == ParkedOrder("conflict", 409, "quantity_too_large", "too many")
    assert parked["ord_c"].last_offset == 2


def _marker(order: str, through: int, landed: int | None) -> Headers:
    return redrive_marker_headers(
        order_id=order, topic="events", partition=0, through=through, landed=landed
    )


def test_a_redrive_marker_releases_an_order_once_its_first_redriven_record_was_read() -> None:
    records = [(0, _parking("ord_a", 0)), (1, _marker("ord_a", through=0, landed=40))]
    assert parked_orders(records, "events", 0, committed=41) == {}
    # the redriven record is not read yet: events of the order before it must not overtake it
    assert list(parked_orders(records, "events", 0, committed=40)) == ["ord_a"]
    assert list(parked_orders(records, "events", 0, committed=None)) == ["ord_a"]


def test_a_record_parked_after_the_redrive_read_the_parking_topic_keeps_the_order_parked() -> None:
    # parked at 1 while the redrive ran (it had read through 0); its marker came after
    records = [
        (0, _parking("ord_a", 0)),
        (1, _parking("ord_a", 0)),
        (2, _marker("ord_a", through=0, landed=40)),
    ]
    assert list(parked_orders(records, "events", 0, committed=100)) == ["ord_a"]
    again = [*records[:1], (1, _marker("ord_a", through=0, landed=40)), (2, _parking("ord_a", 0))]
    assert list(parked_orders(again, "events", 0, committed=100)) == ["ord_a"]


@given(
    through=st.integers(min_value=0, max_value=20),
    last=st.integers(min_value=-1, max_value=20),
    unacked=st.integers(min_value=0, max_value=3),
    first=st.booleans(),
)
def test_only_the_first_redriven_record_of_a_redrive_that_saw_everything_parked_unparks(
    through: int, last: int, unacked: int, first: bool
) -> None:
    why = ParkedOrder("conflict", 409, None, None, last_offset=last, unacked=unacked)
    headers: Headers = ((REDRIVE_THROUGH_HEADER, str(through).encode()),)
    if first:
        headers += ((REDRIVE_FIRST_HEADER, b"1"),)
    assert unparks(why, headers) == (first and unacked == 0 and last <= through)


def test_a_redriven_record_without_our_marks_never_unparks() -> None:
    why = ParkedOrder("conflict", 409, None, None, last_offset=-1)
    assert not unparks(why, ((REDRIVEN_HEADER, b"1"),))


def test_records_of_another_topic_do_not_park_anything() -> None:
    assert parked_orders([(0, _parking("ord_a", 0))], "other-topic", 0, committed=None) == {}
