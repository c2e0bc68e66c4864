"""What the publisher writes: single-object encoding, or Confluent framing with registered ids.

With a registry, each event kind's writer schema is registered once, up front, under a subject
named by a Confluent subject-name strategy:

    topic          <topic>-value                       (TopicNameStrategy, the default)
    topic-record   <topic>-fulfillment.events.<Name>   (TopicRecordNameStrategy)
    record         fulfillment.events.<Name>           (RecordNameStrategy)

Both kinds share one topic, so under `topic` both schemas go to one subject: the registry must
accept that (compatibility NONE for the subject); a registry that checks BACKWARD compatibility
refuses the second record and wants `topic-record` instead.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal, Protocol, TypeAlias, get_args

from consumer.codec.avro import EventCodec
from consumer.codec.schema_store import full_name
from consumer.core.events import EventKind, FulfillmentEvent

SubjectStrategy: TypeAlias = Literal["topic", "topic-record", "record"]
SUBJECT_STRATEGIES: tuple[str, ...] = get_args(SubjectStrategy)

Encoder: TypeAlias = Callable[[FulfillmentEvent], bytes]


class SchemaRegistrar(Protocol):
    """`consumer.kafka.schema_registry.SchemaRegistry.register`: idempotent, returns the id.

    Raises ConfigurationError when the registry refuses the schema or our credentials,
    InfrastructureError when it cannot be reached.
    """

    async def register(self, subject: str, schema: Mapping[str, Any]) -> int: ...


def subject_name(topic: str, strategy: SubjectStrategy, schema: Mapping[str, Any]) -> str:
    """The registry subject for a record schema under a Confluent subject-name strategy."""
    record = full_name(schema)
    if strategy == "topic":
        return f"{topic}-value"
    if strategy == "topic-record":
        return f"{topic}-{record}"
    return record


async def register_writer_schemas(
    codec: EventCodec, registry: SchemaRegistrar, topic: str, strategy: SubjectStrategy = "topic"
) -> dict[EventKind, int]:
    """Register every kind's writer schema (may raise as `SchemaRegistrar` says): kind -> id."""
    return {
        kind: await registry.register(subject_name(topic, strategy, schema), schema)
        for kind, schema in sorted(codec.writer_schemas().items())
    }


def confluent_encoder(codec: EventCodec, ids: Mapping[EventKind, int]) -> Encoder:
    """Encode with Confluent framing and the registered id of the event's kind."""

    def encode(event: FulfillmentEvent) -> bytes:
        return codec.encode_confluent(event, ids[event.kind])

    return encode
