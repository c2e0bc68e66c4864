"""What a Digital River answer means for the consumer. [pure]

`../shared/DR-API.md` ("What each outcome means") decides; this module only writes it down, in
the vocabulary of decisions.py:

    201              -> Applied        settle the batch
    409              -> Reconcile      an "already" code may be a replay or a real conflict:
                                       look at the order's fulfillments before deciding
    429              -> RetryLater     not applied (blocked before the backend); honour Retry-After
    408, 5xx         -> RetryLater     ambiguous: it may exist; reconcile before posting again
    timeout, reset   -> RetryLater     ambiguous, as above
    connect failure  -> RetryLater     not ambiguous: nothing left this process
    400/404/405/406  -> Park           will not succeed as is: park the order
    401, 403         -> Stop           configuration: no event is at fault

Every RetryLater but the 429 is `systemic`: it says Digital River fails as a whole, and only
those feed the circuit breaker (breaker.py); a 429 is about our pace.

Why 403 stops rather than parks: this classifier sees one call, and a 403 from Digital River
means the key may not do this (wrong key, wrong mode, missing permission) — true for every order
alike. Parking would drain every order of the partition into the parking topic; stopping loses
nothing and says what to fix. For the same reason a refused metadata shape (`invalid_metadata_*`,
`too_many_metadata_pairs`, `unknown_parameter`: our request, not the order's data) and
`api_key_expired` stop. Decisions use `type`/`code`, never `message`.

This is the one place that reads an answer's parts: `parse_retry_after` (the `Retry-After`
header) and `ErrorBody.of` (the first error's `code` and `message`); the client and delivery
call them rather than parse again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Final

from consumer.core.decisions import Answer, Applied, Park, Reason, Reconcile, RetryLater, Stop
from consumer.core.errors import FailureKind, RetryableFailure

ALREADY_CODES: Final = frozenset(
    {
        "order_fulfilled",
        "order_complete",
        "order_cancelled",
        "item_fulfilled",
        "item_cancelled",
        "quantity_too_large",
    }
)
"""409 codes that may mean "a previous attempt of ours already applied this"."""

STOP_CODES: Final = frozenset(
    {
        "invalid_metadata_key",
        "invalid_metadata_value",
        "too_many_metadata_pairs",
        "unknown_parameter",
    }
)
"""Refusals of the request's shape: the same for every order, so they stop rather than park."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with jitter.

    Attempt n waits between `floor_fraction` and 1 times min(cap, base x multiplier^(n-1)).
    `floor_fraction=0` is AWS's "full jitter"; the default 0.5 ("equal jitter") keeps a minimum
    wait so a run of bad luck cannot hammer Digital River. `max_retry_after` bounds an absurd
    Retry-After (the engine re-asks after it anyway).
    """

    base: float = 0.2
    cap: float = 30.0
    multiplier: float = 2.0
    floor_fraction: float = 0.5
    max_retry_after: float = 300.0

    def __post_init__(self) -> None:
        if not (
            0 < self.base <= self.cap and self.multiplier >= 1 and 0 <= self.floor_fraction <= 1
        ):
            raise ValueError(f"inconsistent retry policy {self}")


def backoff(attempt: int, policy: RetryPolicy, jitter: float) -> float:
    """Seconds to wait after failed attempt number `attempt` (1-based); `jitter` drawn from [0, 1).

    Bounded by `policy.cap`; for a given jitter, never shorter than for an earlier attempt.
    """
    if not 0 <= jitter <= 1:
        raise ValueError(f"jitter must be in [0, 1), got {jitter}")
    exponent = min(max(attempt, 1) - 1, 64)  # 2**64 x base is far past any cap
    ceiling = min(policy.cap, policy.base * policy.multiplier**exponent)
    return ceiling * (policy.floor_fraction + (1 - policy.floor_fraction) * jitter)


def parse_retry_after(value: str | None, now_epoch: float | None = None) -> float | None:
    """Seconds from a `Retry-After` header: integer seconds, or an HTTP-date when `now_epoch`
    (seconds since the epoch) is given. None when absent or unreadable."""
    if value is None:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():
        return float(int(text))
    if now_epoch is None:
        return None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; a zone-less one is read as such
        return None
    return max(0.0, when.timestamp() - now_epoch)


@dataclass(frozen=True, slots=True)
class ErrorBody:
    """The first error of a Digital River error body (`{"type", "errors": [{"code", ...}]}`):
    only the first comes back, and decisions use its `code`, never its `message`."""

    code: str | None
    message: str | None

    @classmethod
    def of(cls, body: Mapping[str, object] | None) -> ErrorBody:
        errors = body.get("errors") if body is not None else None
        if isinstance(errors, list) and errors and isinstance(errors[0], Mapping):
            code, message = errors[0].get("code"), errors[0].get("message")
            return cls(
                code if isinstance(code, str) else None,
                message if isinstance(message, str) else None,
            )
        return cls(None, None)


def classify_response(  # noqa: PLR0917 - the engine's call shape, all values of one answer
    status: int,
    body: Mapping[str, object] | None,
    retry_after: str | None,
    attempt: int,
    policy: RetryPolicy,
    jitter: float,
    *,
    now_epoch: float | None = None,
) -> Answer:
    """What an HTTP answer to `POST /fulfillments` means (table in the module docstring).

    `attempt` is the 1-based number of this attempt, `jitter` a draw from [0, 1) for backoff,
    `now_epoch` (wall-clock seconds) lets an HTTP-date Retry-After count; without it such a
    header is ignored and backoff applies.
    """
    error = ErrorBody.of(body)
    if 200 <= status < 300:
        fulfillment_id = body.get("id") if body is not None else None
        if isinstance(fulfillment_id, str) and fulfillment_id:
            return Applied(fulfillment_id)
        return Reconcile("created_without_id", status, None)
    if error.code != "api_key_expired" and (status in _RETRYABLE or status >= 500):
        told = parse_retry_after(retry_after, now_epoch)
        delay = backoff(attempt, policy, jitter) if told is None else told
        reason = _RETRYABLE.get(status, "server_error")
        # 429 is about our pace: not applied (not ambiguous), and Digital River is up
        throttled = status == 429
        return RetryLater(
            min(delay, policy.max_retry_after), not throttled, reason, status, not throttled
        )
    return _refusal(status, error)


_RETRYABLE: Final[dict[int, Reason]] = {429: "rate_limited", 408: "request_timeout"}


def _refusal(status: int, error: ErrorBody) -> Reconcile | Park | Stop:
    code = error.code
    if code == "api_key_expired":
        return Stop("api_key_expired", status, code)
    if status == 409:
        return Reconcile("conflict", status, code, error.message)
    if status in (401, 403):
        return Stop("unauthorized" if status == 401 else "forbidden", status, code)
    if 400 <= status < 500:
        if code in STOP_CODES:
            return Stop("request_shape_rejected", status, code)
        return Park("not_found" if status == 404 else "rejected", status, code, error.message)
    return Stop("unexpected_status", status, code)  # 1xx/3xx: DR_API_URL is not Digital River


_TRANSPORT_REASONS: Final[dict[FailureKind, Reason]] = {
    "connect": "connect_failed",
    "timeout": "client_timeout",
    "reset": "connection_reset",
    "protocol": "protocol_error",
}


def classify_transport_failure(
    kind: FailureKind, attempt: int, policy: RetryPolicy, jitter: float
) -> RetryLater:
    """No HTTP answer: systemic. Only a failure to connect proves nothing was sent; the rest
    are ambiguous."""
    delay = backoff(attempt, policy, jitter)
    return RetryLater(delay, kind != "connect", _TRANSPORT_REASONS[kind], None, True)


def classify_read_failure(
    failure: RetryableFailure, attempt: int, policy: RetryPolicy, jitter: float
) -> RetryLater | Park:
    """A look at an order's fulfillments (`GET /fulfillments?orderId=`) that got no listing
    (`failure.status` None: no answer). A 4xx that retrying cannot change (not 408 or 429) parks
    the order: Digital River will not list it as asked, now or later. Anything else is tried
    again after the failure's `retry_after`, else backoff; a 429 says nothing of an outage, no
    answer, a 408 or a 5xx does."""
    status = failure.status
    if status is not None and 400 <= status < 500 and status not in (408, 429):
        return Park("reconcile_read_refused", status, None, failure.reason)
    delay = failure.retry_after or backoff(attempt, policy, jitter)
    systemic = status is None or status == 408 or status >= 500
    return RetryLater(delay, True, "reconcile_read_failed", status, systemic)
