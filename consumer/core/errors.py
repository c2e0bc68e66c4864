"""Errors, classified by what the caller must do, not by where they came from.

    FulfillmentConsumerError
    ├── BadInput                      settled: the record goes to the dead-letter topic
    │   ├── UndecodableRecord         not Avro we can read (bad magic byte, truncated body, ...)
    │   ├── UnknownSchema             a fingerprint / registry id we do not know
    │   ├── KeyMismatch               record key != orderId
    │   └── InvalidEvent              decodes, but breaks a contract rule (which rule, which field)
    ├── OrderFailure                  settled: the order is parked (this event and every later one)
    ├── RetryableFailure              nothing settled: try again later (backoff, Retry-After)
    │   └── AmbiguousFailure          the request may have been applied: reconcile before re-posting
    ├── ConfigurationError            stop: wrong settings, wrong key (401/403); dead-letter nothing
    └── InfrastructureError           a broker or registry we depend on misbehaves

Each carries structured context (order id, partition, offset, status, retry-after) as attributes,
never a secret.
"""

from __future__ import annotations

from typing import Literal, TypeAlias

BadInputClass: TypeAlias = Literal["undecodable", "unknown_schema", "key_mismatch", "invalid_event"]


class FulfillmentConsumerError(Exception):
    """Base of every error this package raises on purpose."""


class BadInput(FulfillmentConsumerError):
    """A record that can never be processed as is; it goes to the dead-letter topic."""

    error_class: BadInputClass = "undecodable"

    def __init__(self, reason: str, *, field: str | None = None) -> None:
        super().__init__(reason if field is None else f"{field}: {reason}")
        self.reason = reason
        self.field = field


class UndecodableRecord(BadInput):
    error_class: BadInputClass = "undecodable"


class UnknownSchema(BadInput):
    error_class: BadInputClass = "unknown_schema"


class KeyMismatch(BadInput):
    error_class: BadInputClass = "key_mismatch"


class InvalidEvent(BadInput):
    error_class: BadInputClass = "invalid_event"


class OrderFailure(FulfillmentConsumerError):
    """Digital River refused an order's request for good; the order is parked."""

    def __init__(
        self, reason: str, *, order_id: str, status: int | None = None, code: str | None = None
    ) -> None:
        super().__init__(f"order {order_id}: {reason}")
        self.reason = reason
        self.order_id = order_id
        self.status = status
        self.code = code


class RetryableFailure(FulfillmentConsumerError):
    """Nothing was settled; the same work may be tried again after `retry_after` seconds."""

    def __init__(
        self, reason: str, *, retry_after: float | None = None, status: int | None = None
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
        self.status = status


class AmbiguousFailure(RetryableFailure):
    """Timeout, reset or 408/5xx: Digital River may have applied the request."""


class ConfigurationError(FulfillmentConsumerError):
    """Settings are wrong (a setting's value, or a key Digital River refuses). Names the setting."""

    def __init__(self, reason: str, *, setting: str | None = None) -> None:
        super().__init__(reason if setting is None else f"{setting}: {reason}")
        self.reason = reason
        self.setting = setting


class InfrastructureError(FulfillmentConsumerError):
    """Kafka or the schema registry failed in a way the caller cannot fix by retrying a record."""
