"""The producer adapter: records to topics, each acknowledged or failed, in order. [io]

Used by the member (dead-letter, parking and changelog topics), the warehouse publisher and
`redrive`, each with an idempotent producer (`configs.producer_config`).

Threading: `produce` may be called from any one thread; delivery callbacks run inside `poll()`
and `flush()`, on the thread that calls them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from consumer.core.errors import InfrastructureError
from consumer.kafka.records import Headers

# how `RecordWriter.produce` reports a record the producer or broker refused for its size
# (MSG_SIZE_TOO_LARGE: over message.max.bytes): making it again can never succeed
RECORD_TOO_LARGE = "record too large"


class RecordWriter:
    """Produces records with one producer; the caller's `on_done` hears how each ended."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        """Raises InfrastructureError when librdkafka refuses `config`."""
        try:
            self._producer = Producer(dict(config))
        except KafkaException as exc:
            raise InfrastructureError(f"cannot create the Kafka producer: {exc}") from exc

    def produce(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Headers,
        on_done: Callable[[str | None], None],
        *,
        partition: int | None = None,
        landed: Callable[[int], None] | None = None,
    ) -> None:
        """Queue one record (to `partition`, else the key's); `on_done(None)` once acknowledged,
        `on_done(reason)` if it failed (at once when the producer refuses it); a reason starting
        with RECORD_TOO_LARGE if it is too big; `landed(offset)` just before `on_done(None)`.
        Blocks, serving delivery callbacks, while the producer's queue is full. Never raises."""

        def delivered(err: KafkaError | None, msg: Message) -> None:
            offset = msg.offset()
            if err is None and landed is not None and offset is not None:
                landed(offset)
            on_done(None if err is None else _failure(err))

        while True:
            try:
                self._producer.produce(
                    topic,
                    value=value,
                    key=key,
                    headers=list(headers),
                    on_delivery=delivered,
                    partition=-1 if partition is None else partition,
                )
                return
            except BufferError:
                self._producer.poll(0.1)
            except KafkaException as exc:  # e.g. that partition does not exist, or too large
                error = exc.args[0] if exc.args else None
                on_done(_failure(error) if isinstance(error, KafkaError) else str(exc))
                return

    def poll(self, timeout: float = 0.0) -> None:
        """Run delivery callbacks."""
        self._producer.poll(timeout)

    def flush(self, timeout: float) -> int:
        """Wait up to `timeout` s for every queued record's delivery; how many are left."""
        return int(self._producer.flush(timeout))


def _failure(error: KafkaError) -> str:
    too_large = (KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.RECORD_LIST_TOO_LARGE)
    return f"{RECORD_TOO_LARGE}: {error}" if error.code() in too_large else str(error)
