"""Waiting for a writer schema: fetch it from the registry, through outages. [io]

The engine decodes without waiting (`EventCodec.decode`); a Confluent-framed record whose schema
it does not hold yet waits, with every later record of its partition, while `SchemaFetcher`
fetches the schema. A registry that cannot be reached is asked again with backoff for as long as
it takes: the member stays up and says so (`on_down(reason)`, then `on_down(None)` once the
registry answers again) instead of crashing or dead-lettering good records.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable

import structlog

from consumer.codec.avro import EventCodec
from consumer.core.errors import InfrastructureError, UnknownSchema
from consumer.core.outcomes import RetryPolicy, backoff

_log = structlog.get_logger("schema_registry")
REGISTRY_RETRY = RetryPolicy(base=0.5, cap=10.0)


class SchemaFetcher:
    """Fetches writer schemas into a codec; concurrent waiters of one id share one request."""

    def __init__(
        self,
        codec: EventCodec,
        *,
        on_down: Callable[[str | None], None],
        policy: RetryPolicy = REGISTRY_RETRY,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._codec = codec
        self._on_down = on_down
        self._policy = policy
        self._rng = rng or random.Random()
        self._sleep = sleep
        self._attempts: dict[int, asyncio.Future[None]] = {}
        self._down = False

    async def fetch(self, schema_id: int, *, wanted: Callable[[], bool] = lambda: True) -> bool:
        """Return True once the codec holds `schema_id`'s schema; False if `wanted()` turned
        false while the registry was unreachable (the partition went away).

        Raises UnknownSchema (no such id, or not one of ours: the record is bad input) and
        ConfigurationError (the registry refuses us: stop). Retries everything else.
        """
        attempt = 0
        while True:
            try:
                await asyncio.shield(self._attempt(schema_id))
            except UnknownSchema:
                self._recovered()  # the registry answered: it has no such schema
                raise
            except InfrastructureError as exc:
                attempt += 1
                delay = backoff(attempt, self._policy, self._rng.random())
                if not self._down:
                    _log.warning("schema_registry_unreachable", schema_id=schema_id, error=str(exc))
                self._down = True
                self._on_down(str(exc))
                _log.info("schema_fetch_retry_scheduled", schema_id=schema_id,
                          attempt=attempt, delay=round(delay, 3))  # fmt: skip
                await self._sleep(delay)
                if not wanted():
                    return False
                continue
            self._recovered()
            return True

    def _attempt(self, schema_id: int) -> asyncio.Future[None]:
        future = self._attempts.get(schema_id)
        if future is None:
            future = asyncio.ensure_future(self._codec.fetch_schema(schema_id))
            self._attempts[schema_id] = future
            future.add_done_callback(lambda done: self._finished(schema_id, done))
        return future

    def _finished(self, schema_id: int, done: asyncio.Future[None]) -> None:
        self._attempts.pop(schema_id, None)
        if not done.cancelled():
            done.exception()  # retrieved here too: a waiter may have gone away meanwhile

    def _recovered(self) -> None:
        if self._down:
            self._down = False
            _log.info("schema_registry_reachable")
            self._on_down(None)
