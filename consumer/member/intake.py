"""Records in: each consumed record tracked, kept and decoded, in offset order per partition. [io]

A record whose writer schema the codec lacks waits, and every later record of its partition with
it, while the schema is fetched (schema_wait.py). Bad input goes to the dead-letter topic
(aside.py) unless too many recent records were bad (deadletters.DeadLetterGuard): then the member
stops. A decoded event goes on to `route` (the engine's).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any

import structlog

from consumer.codec.avro import EventCodec, SchemaNotFetched
from consumer.core.deadletters import DeadLetterGuard
from consumer.core.errors import BadInput, ConfigurationError, UnknownSchema
from consumer.kafka.records import SourceRecord
from consumer.member.aside import AsideWriter
from consumer.member.holdings import EngineStats, Holdings, State
from consumer.member.schema_wait import SchemaFetcher
from consumer.member.stop import WorkStop
from consumer.ops.health import HealthServer
from consumer.ops.metrics import Metrics

_log = structlog.get_logger("engine")
Route = Callable[[State, SourceRecord, Any], None]


class RecordIntake:
    """`accept(record)` on the loop for every record consumed; decodes nothing more once work
    stopped (stop.py), and stops it itself when the registry refuses our credentials or too
    many recent records were bad. `close()` abandons the schema fetches under way."""

    def __init__(
        self,
        held: Holdings,
        stats: EngineStats,
        codec: EventCodec,
        aside: AsideWriter,
        *,
        max_bad_ratio: float,
        metrics: Metrics,
        health: HealthServer | None,
        rng: random.Random,
        route: Route,
        stop: WorkStop,
    ) -> None:
        self._partitions = held.partitions
        self._stats = stats
        self._codec = codec
        self._aside = aside
        self._guard = DeadLetterGuard(max_ratio=max_bad_ratio)
        self._metrics = metrics
        self._health = health
        self._route = route
        self._stop = stop
        self._schemas = SchemaFetcher(codec, on_down=self._registry_down, rng=rng)
        self._schema_tasks: set[asyncio.Task[None]] = set()

    def accept(self, record: SourceRecord) -> None:
        ps = self._partitions.get(record.partition)
        if ps is None or ps.revoking:
            return  # not ours any more: the next owner reads it from the committed offset
        last = ps.watermark.last_tracked
        if last is not None and record.offset <= last:
            return
        self._stats.records += 1
        self._metrics.record_consumed(ps.partition)
        ps.watermark.track(record.offset)
        ps.keep(record, record.offset)
        ps.undecoded.append(record)
        if len(ps.undecoded) == 1:  # else an earlier record waits for its schema: none overtakes it
            self._decode_waiting(ps)

    def close(self) -> None:
        for task in self._schema_tasks:
            task.cancel()  # records waiting for a schema stay unsettled: read again next time

    def _decode_waiting(self, ps: State) -> None:
        """Decode `ps.undecoded` in offset order, up to a record whose writer schema must be
        fetched first: it and every later record of the partition wait for `_fetch_schema`."""
        while ps.undecoded and not self._stop.stopped:
            record = ps.undecoded[0]
            try:
                decoded = self._codec.decode(record.key, record.value)
            except SchemaNotFetched as missing:
                task = asyncio.create_task(self._fetch_schema(ps, missing.schema_id))
                self._schema_tasks.add(task)
                task.add_done_callback(self._schema_tasks.discard)
                return
            except BadInput as exc:
                ps.undecoded.popleft()
                self._bad_input(ps, record, exc)
                continue
            ps.undecoded.popleft()
            self._guard.record(bad=False)
            self._metrics.record_decoded(ps.partition)
            self._route(ps, record, decoded.event)

    def _bad_input(self, ps: State, record: SourceRecord, exc: BadInput) -> None:
        self._guard.record(bad=True)
        if self._guard.exceeded():
            self._stop.overwhelmed(
                f"dead-letter limit: {self._guard.bad_in_window} of the last "
                f"{self._guard.window_size} records were bad (DLQ_MAX_RATIO="
                f"{self._guard.max_ratio}); nothing more is dead-lettered"
            )
            return
        self._stats.dead_lettered += 1
        self._aside.dead_letter(ps, record, exc)

    async def _fetch_schema(self, ps: State, schema_id: int) -> None:
        """Fetch the schema the first waiting record needs (through registry outages), then
        decode on. An id the registry does not have dead-letters that record."""

        def owned() -> bool:
            return self._partitions.get(ps.partition) is ps and not ps.revoking

        try:
            if not await self._schemas.fetch(schema_id, wanted=owned):
                return  # the partition went away; the next owner reads its records again
        except UnknownSchema as exc:
            if owned() and ps.undecoded:
                self._bad_input(ps, ps.undecoded.popleft(), exc)
        except ConfigurationError as exc:
            self._stop.refused(str(exc))
            return
        except Exception:
            _log.exception("schema_fetch_crashed", partition=ps.partition, schema_id=schema_id)
            await asyncio.sleep(1.0)
        if owned():
            self._decode_waiting(ps)

    def _registry_down(self, reason: str | None) -> None:
        if self._health is not None:
            self._health.set_dependency_down("schema registry", reason)
