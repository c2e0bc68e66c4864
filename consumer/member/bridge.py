"""How work crosses between a member's two threads. [io]

The asyncio event loop owns every piece of state; one Kafka thread (kafka/thread.py `KafkaThread`)
makes every confluent-kafka call. The loop hands calls to the Kafka thread with `kafka`; the
rebalance callbacks, which confluent-kafka runs on the Kafka thread inside `consume()`, hand work
back to the loop with `to_loop` and wait for it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from consumer.kafka.thread import KafkaThread

T = TypeVar("T")


class ThreadBridge:
    """The Kafka thread and the event loop of one member (bound when the member runs)."""

    def __init__(self, kafka_thread: KafkaThread) -> None:
        self._kafka_thread = kafka_thread
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    async def kafka(self, fn: Callable[..., T], *args: Any) -> T:
        """On the loop: run `fn(*args)` on the Kafka thread and wait for it."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._kafka_thread, fn, *args)

    def to_loop(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """On the Kafka thread: run `coro` on the loop; the caller waits on the future."""
        assert self._loop is not None, "the member is not running"
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def shutdown(self, *, wait: bool) -> None:
        """No more Kafka calls; `wait` for the thread unless a call hangs (it is a daemon)."""
        self._kafka_thread.shutdown(wait=wait)
