"""classify_response / classify_transport_failure / classify_read_failure / backoff:
DR-API.md's table, written down."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumer.core.decisions import Answer, Applied, Park, Reconcile, RetryLater, Stop
from consumer.core.errors import FailureKind, RetryableFailure
from consumer.core.outcomes import (
    ALREADY_CODES,
    ErrorBody,
    RetryPolicy,
    backoff,
    classify_read_failure,
    classify_response,
    classify_transport_failure,
    parse_retry_after,
)

POLICY = RetryPolicy()
ERROR_TYPES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    408: "request_timeout",
    409: "conflict",
    429: "too_many_requests",
    500: "internal_server_error",
    502: "bad_gateway",
    503: "service_unavailable",
    504: "gateway_timeout",
}


def error(status: int, code: str = "some_code", message: str = "whatever") -> dict[str, object]:
    return {
        "type": ERROR_TYPES.get(status, "bad_request"),
        "errors": [{"code": code, "parameter": "x", "message": message}],
    }


def classify(
    status: int, body: dict[str, object] | None = None, retry_after: str | None = None
) -> Answer:
    return classify_response(status, body, retry_after, 1, POLICY, 0.5)


def test_created_is_applied() -> None:
    assert classify(201, {"id": "ful_1", "orderId": "ord_1"}) == Applied("ful_1")


def test_created_without_a_readable_id_is_reconciled_not_guessed() -> None:
    assert classify(201, None) == Reconcile("created_without_id", 201, None)
    assert classify(201, {"id": 5}) == Reconcile("created_without_id", 201, None)


@pytest.mark.parametrize("code", sorted(ALREADY_CODES))
def test_already_codes_are_decided_by_looking(code: str) -> None:
    assert classify(409, error(409, code)) == Reconcile("conflict", 409, code, "whatever")


def test_an_unknown_conflict_is_also_decided_by_looking() -> None:
    assert classify(409, error(409, "something_new")) == Reconcile(
        "conflict", 409, "something_new", "whatever"
    )


@pytest.mark.parametrize("status", [400, 404, 405, 406, 422])
def test_requests_that_cannot_succeed_as_they_are_park_the_order(status: int) -> None:
    outcome = classify(status, error(status, "invalid_parameter"))
    assert isinstance(outcome, Park)
    assert outcome.status == status
    assert outcome.code == "invalid_parameter"
    assert outcome.reason == ("not_found" if status == 404 else "rejected")


@pytest.mark.parametrize("status", [401, 403])
def test_a_key_digital_river_refuses_stops_work(status: int) -> None:
    outcome = classify(status, error(status, "unauthorized"))
    assert isinstance(outcome, Stop)
    assert outcome.status == status


@pytest.mark.parametrize(
    "code",
    [
        "invalid_metadata_key",
        "invalid_metadata_value",
        "too_many_metadata_pairs",
        "unknown_parameter",
    ],
)
def test_a_refused_request_shape_stops_rather_than_parking_every_order(code: str) -> None:
    assert classify(400, error(400, code)) == Stop("request_shape_rejected", 400, code)


def test_an_expired_key_stops_whatever_the_status() -> None:
    for status in (400, 401, 503):
        assert classify(status, error(status, "api_key_expired")) == Stop(
            "api_key_expired", status, "api_key_expired"
        )


def test_rate_limited_is_not_ambiguous_and_waits_for_retry_after() -> None:
    assert classify(429, error(429, "too_many_requests"), "7") == RetryLater(
        7.0, False, "rate_limited", 429, systemic=False
    )


@pytest.mark.parametrize("status", [408, 500, 502, 503, 504, 599])
def test_timeouts_and_server_errors_are_ambiguous(status: int) -> None:
    outcome = classify(status, error(status))
    assert isinstance(outcome, RetryLater)
    assert outcome.ambiguous
    assert outcome.systemic
    assert outcome.delay == backoff(1, POLICY, 0.5)


@pytest.mark.parametrize("status", [100, 301, 302, 304])
def test_a_redirect_or_informational_answer_means_the_url_is_wrong(status: int) -> None:
    assert classify(status) == Stop("unexpected_status", status, None)


def test_the_message_never_decides() -> None:
    plain = classify(400, error(400, "invalid_parameter", "order already fulfilled"))
    assert isinstance(plain, Park)


@pytest.mark.parametrize(
    "body",
    [None, {}, {"errors": "nope"}, {"errors": []}, {"errors": [7]}, {"errors": [{"code": 3}]}],
)
def test_malformed_error_bodies_are_classified_by_status(body: dict[str, object] | None) -> None:
    assert classify(400, body) == Park("rejected", 400, None)
    assert isinstance(classify(503, body), RetryLater)


@pytest.mark.parametrize(
    ("kind", "ambiguous"),
    [("connect", False), ("timeout", True), ("reset", True), ("protocol", True)],
)
def test_only_a_failure_to_connect_proves_nothing_was_sent(
    kind: FailureKind, ambiguous: bool
) -> None:
    outcome = classify_transport_failure(kind, 3, POLICY, 0.25)
    assert outcome.ambiguous is ambiguous
    assert outcome.systemic, "no answer at all says Digital River is failing"
    assert outcome.status is None
    assert outcome.delay == backoff(3, POLICY, 0.25)


@given(
    st.integers(min_value=-3, max_value=10_000),
    st.floats(min_value=0, max_value=1, exclude_max=True),
)
def test_backoff_is_bounded_and_never_shrinks_with_attempts(attempt: int, jitter: float) -> None:
    now = backoff(attempt, POLICY, jitter)
    later = backoff(attempt + 1, POLICY, jitter)
    assert POLICY.base * POLICY.floor_fraction <= now <= POLICY.cap
    assert later >= now


def test_backoff_grows_exponentially_until_the_cap() -> None:
    ceilings = [backoff(attempt, POLICY, 1.0) for attempt in range(1, 12)]
    assert ceilings[:4] == pytest.approx([0.2, 0.4, 0.8, 1.6])
    assert ceilings[-1] == POLICY.cap


def test_backoff_refuses_jitter_outside_the_unit_interval() -> None:
    with pytest.raises(ValueError, match="jitter"):
        backoff(1, POLICY, 1.5)


def test_an_inconsistent_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="retry policy"):
        RetryPolicy(base=60.0, cap=30.0)


@given(st.integers(min_value=0, max_value=10**6), st.integers(min_value=1, max_value=50))
def test_retry_after_seconds_are_honoured_up_to_the_policy_bound(
    seconds: int, attempt: int
) -> None:
    outcome = classify_response(429, None, str(seconds), attempt, POLICY, 0.3)
    assert outcome == RetryLater(
        min(float(seconds), POLICY.max_retry_after), False, "rate_limited", 429, systemic=False
    )


@given(st.text(max_size=20))
def test_garbage_retry_after_falls_back_to_backoff(header: str) -> None:
    outcome = classify_response(503, None, header, 2, POLICY, 0.3)
    assert isinstance(outcome, RetryLater)
    told = parse_retry_after(header)
    expected = backoff(2, POLICY, 0.3) if told is None else min(told, POLICY.max_retry_after)
    assert outcome.delay == expected


def test_retry_after_as_an_http_date_counts_from_now_epoch() -> None:
    now = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    header = format_datetime(now + timedelta(seconds=42), usegmt=True)
    assert parse_retry_after(header, now.timestamp()) == 42.0
    assert parse_retry_after(header) is None
    outcome = classify_response(429, None, header, 1, POLICY, 0.0, now_epoch=now.timestamp())
    assert outcome == RetryLater(42.0, False, "rate_limited", 429, systemic=False)


@pytest.mark.parametrize("header", ["", " ", "-1", "1.5", "soon", "٣", "Wed, 99 Foo 2024"])
def test_unreadable_retry_after_values_are_ignored(header: str) -> None:
    assert parse_retry_after(header, 0.0) is None


def test_a_past_http_date_means_retry_now() -> None:
    assert parse_retry_after("Wed, 01 May 2024 12:00:00 GMT", 2e9) == 0.0


DECLARED_FOR_CREATE: dict[int, tuple[type, bool | None]] = {
    400: (Park, None),
    401: (Stop, None),
    403: (Stop, None),
    404: (Park, None),  # not declared for create, but an unknown order may answer it
    405: (Park, None),
    406: (Park, None),
    408: (RetryLater, True),
    409: (Reconcile, None),
    429: (RetryLater, False),
    500: (RetryLater, True),
    502: (RetryLater, True),
    503: (RetryLater, True),
    504: (RetryLater, True),
}


@pytest.mark.parametrize(("status", "expected"), sorted(DECLARED_FOR_CREATE.items()))
def test_every_declared_status_means_what_dr_api_says(
    status: int, expected: tuple[type, bool | None]
) -> None:
    kind, ambiguous = expected
    outcome = classify(status, error(status))
    assert type(outcome) is kind
    if isinstance(outcome, RetryLater):
        assert outcome.ambiguous is ambiguous


@given(st.integers(min_value=100, max_value=599))
def test_every_retry_but_a_rate_limit_says_digital_river_is_failing(status: int) -> None:
    outcome = classify(status, error(status))
    if isinstance(outcome, RetryLater):
        assert outcome.systemic is (status != 429)


def test_the_first_error_gives_its_code_and_message() -> None:
    body = {
        "type": "conflict",
        "errors": [
            {"code": "item_fulfilled", "parameter": "itemId", "message": "Item is fulfilled."},
            {"code": "ignored", "message": "only the first counts"},
        ],
    }
    assert ErrorBody.of(body) == ErrorBody("item_fulfilled", "Item is fulfilled.")


@pytest.mark.parametrize(
    "body", [None, {}, {"errors": []}, {"errors": ["x"]}, {"errors": [{"code": 3, "message": 4}]}]
)
def test_an_error_body_without_a_readable_first_error_gives_nothing(
    body: dict[str, object] | None,
) -> None:
    assert ErrorBody.of(body) == ErrorBody(None, None)


def test_a_refusal_carries_digital_rivers_message_for_the_parking_headers() -> None:
    refused = classify(400, error(400, "invalid_parameter", "Item itm_9 is unknown."))
    assert refused == Park("rejected", 400, "invalid_parameter", "Item itm_9 is unknown.")


@pytest.mark.parametrize("status", [400, 403, 404, 405, 422])
def test_a_look_that_digital_river_refuses_for_good_parks_the_order(status: int) -> None:
    failure = RetryableFailure(f"GET /fulfillments answered {status}", status=status)
    assert classify_read_failure(failure, 1, POLICY, 0.5) == Park(
        "reconcile_read_refused", status, None, f"GET /fulfillments answered {status}"
    )


def test_a_throttled_look_waits_as_told_and_says_nothing_of_an_outage() -> None:
    failure = RetryableFailure("GET /fulfillments answered 429", status=429, retry_after=3.0)
    assert classify_read_failure(failure, 1, POLICY, 0.5) == RetryLater(
        3.0, True, "reconcile_read_failed", 429, systemic=False
    )


@pytest.mark.parametrize("status", [None, 408, 500, 503])
def test_a_look_without_an_answer_or_with_a_5xx_backs_off_and_is_systemic(
    status: int | None,
) -> None:
    failure = RetryableFailure("GET /fulfillments failed", status=status)
    assert classify_read_failure(failure, 2, POLICY, 0.5) == RetryLater(
        backoff(2, POLICY, 0.5), True, "reconcile_read_failed", status, systemic=True
    )
