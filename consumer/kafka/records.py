"""Records as ours: confluent-kafka messages translated; no confluent-kafka type gets past. [io]"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from confluent_kafka import Message

Headers = tuple[tuple[str, bytes], ...]


@dataclass(frozen=True, slots=True)
class SourceRecord:
    """One consumed record: by a group member, or read from a topic by `reader.read_to_end`."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers
    timestamp_ms: int | None


@dataclass(frozen=True, slots=True)
class Committed:
    """A partition's committed offset (None if never committed) and its metadata."""

    partition: int
    offset: int | None
    metadata: str | None


def record_of(msg: Message[Any, Any]) -> SourceRecord:
    """A consumed message (not an error event) as ours."""
    kind, ts = msg.timestamp()
    topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
    # consumed records always have them
    assert topic is not None
    assert partition is not None
    assert offset is not None
    return SourceRecord(
        topic=topic,
        partition=partition,
        offset=offset,
        key=msg.key(),
        value=msg.value(),
        headers=_headers(msg.headers()),
        timestamp_ms=ts if kind != 0 else None,
    )


def _headers(raw: Any) -> Headers:
    return tuple((str(k), _as_bytes(v)) for k, v in (raw or []))


def _as_bytes(value: str | bytes | None) -> bytes:
    if value is None:
        return b""
    return value.encode() if isinstance(value, str) else value
