"""Errors, classified by what the caller must do, not by where they came from.

    FulfillmentConsumerError          every error raised on purpose; `context()` for a log line
    ├── RetryableFailure              retry later: nothing settled (`retry_after`, `status`, `code`)
    │   ├── TransportFailure          no HTTP answer from Digital River; `kind` says whether the
    │   │                             request may have reached it (anything but "connect" may)
    │   ├── LeaseEnded                the member's lease ended: nothing sent; the batch waits
    │   ├── SchemaNotFetched          a registry schema the codec lacks: fetch it, decode again
    │   └── InfrastructureError       Kafka or the schema registry failed: a member tries again
    │       │                         (commits, schema fetches); a tool exits; a fatal Kafka
    │       │                         error ends the member
    │       └── tools.demo.DemoFailed a piece of the demo did not do its part: `demo` exits 1
    ├── BadInput                      dead-letter: the record is settled in the dead-letter topic
    │   ├── UndecodableRecord         not Avro we can read (bad magic byte, truncated body, ...)
    │   ├── UnknownSchema             a fingerprint / registry id we do not know
    │   ├── KeyMismatch               record key != orderId
    │   └── InvalidEvent              decodes, but breaks a contract rule (which rule, which field)
    ├── ConfigurationError            stop: wrong settings, a key Digital River refuses (401/403);
    │   └── TopicMissingError         dead-letter nothing  (a topic named by a setting is absent)
    └── tools.replay_preview.PreviewTooLarge
                                      stop: the operator narrows the request (exit 1)

Parking is not an exception: Digital River refusing one order's request is a decision value
(`decisions.Park`) that the engine carries out, as is every other answer it gives to a POST.

Each error carries its structured context (order id, partition, offset, status, code,
retry-after, setting, field) as attributes, never a secret; the message is for people.
"""

from __future__ import annotations

from typing import Final, Literal, TypeAlias

BadInputClass: TypeAlias = Literal["undecodable", "unknown_schema", "key_mismatch", "invalid_event"]
FailureKind: TypeAlias = Literal["connect", "timeout", "reset", "protocol"]

_CONTEXT: Final = (
    "order_id",
    "partition",
    "offset",
    "status",
    "code",
    "retry_after",
    "setting",
    "field",
    "kind",
    "schema_id",
)


class FulfillmentConsumerError(Exception):
    """Base of every error this package raises on purpose."""

    order_id: str | None = None
    partition: int | None = None
    offset: int | None = None
    status: int | None = None
    retry_after: float | None = None

    def __init__(self, reason: str, *, message: str | None = None) -> None:
        super().__init__(reason if message is None else message)
        self.reason = reason

    def context(self) -> dict[str, str | int | float]:
        """The structured context that is known (attributes not None), for a log line."""
        found = ((name, getattr(self, name, None)) for name in _CONTEXT)
        return {name: value for name, value in found if isinstance(value, str | int | float)}


class RetryableFailure(FulfillmentConsumerError):
    """Nothing was settled; the same work may be tried again after `retry_after` seconds."""

    def __init__(
        self,
        reason: str,
        *,
        retry_after: float | None = None,
        status: int | None = None,
        code: str | None = None,
        order_id: str | None = None,
    ) -> None:
        super().__init__(reason)
        self.retry_after = retry_after
        self.status = status
        self.code = code
        self.order_id = order_id


class TransportFailure(RetryableFailure):
    """No HTTP answer. Only a failure to connect proves the request never left this process."""

    def __init__(self, kind: FailureKind, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind: FailureKind = kind
        self.detail = detail

    @property
    def may_have_applied(self) -> bool:
        return self.kind != "connect"


class LeaseEnded(RetryableFailure):
    """The member's membership lease (lease.py) ended: it may no longer own the partition, so
    nothing is posted and no listing is acted on; the batch waits and looks first next time."""

    def __init__(self, *, order_id: str, partition: int) -> None:
        super().__init__(f"membership lease ended (order {order_id})", order_id=order_id)
        self.partition = partition


class SchemaNotFetched(RetryableFailure):
    """A Confluent-framed record whose writer schema has not been fetched yet: await
    `EventCodec.fetch_schema(schema_id)`, then decode the record again. Nothing is wrong with it."""

    def __init__(self, schema_id: int) -> None:
        super().__init__(f"schema id {schema_id} not fetched yet")
        self.schema_id = schema_id


class InfrastructureError(RetryableFailure):
    """Kafka or the schema registry failed in a way the caller cannot fix by retrying a record."""


class BadInput(FulfillmentConsumerError):
    """A record that can never be processed as is; it goes to the dead-letter topic."""

    error_class: BadInputClass = "undecodable"

    def __init__(self, reason: str, *, field: str | None = None) -> None:
        super().__init__(reason, message=reason if field is None else f"{field}: {reason}")
        self.field = field


class UndecodableRecord(BadInput):
    error_class: BadInputClass = "undecodable"


class UnknownSchema(BadInput):
    error_class: BadInputClass = "unknown_schema"


class KeyMismatch(BadInput):
    error_class: BadInputClass = "key_mismatch"


class InvalidEvent(BadInput):
    error_class: BadInputClass = "invalid_event"


class ConfigurationError(FulfillmentConsumerError):
    """Settings are wrong (a setting's value, or a key Digital River refuses: `status`). Names
    the setting."""

    def __init__(
        self, reason: str, *, setting: str | None = None, status: int | None = None
    ) -> None:
        super().__init__(reason, message=reason if setting is None else f"{setting}: {reason}")
        self.setting = setting
        self.status = status


class TopicMissingError(ConfigurationError):
    """A topic a setting names does not exist on the cluster."""

    def __init__(self, topic: str, *, setting: str) -> None:
        super().__init__(f"topic {topic} does not exist", setting=setting)
        self.topic = topic
