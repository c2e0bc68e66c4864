"""librdkafka configurations: every client of this package is built from one here. [io]

A client starts from a *cluster config*: `bootstrap.servers` plus the operator's KAFKA_*
passthrough (`cluster_config`), or another client's config. `client_config` cuts it to the keys
its kind of client takes, with the one filter (`consumer.config.settings.passthrough_for`):
a member's consumer, a reader (a consumer that never joins a group), a producer or an admin
client. So every kind of client gets the same passthrough keys whichever command builds it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import structlog

from consumer.config.group_protocol import group_protocol_config
from consumer.config.settings import ClientRole, Settings, passthrough_for

_log = structlog.get_logger("librdkafka")

# librdkafka's defaults prefetch 64 MiB of payload (100,000 messages per partition, 50 MiB
# fetches), held on top of the MAX_BUFFERED_PER_PARTITION records in Python and overshot several
# times by its per-message overhead: ~65 MiB of a member's RSS with small events. These keep
# ~15 MiB, still tens of thousands of records ahead of the engine. KAFKA_* passthrough overrides.
PREFETCH_BOUND: dict[str, int] = {
    "queued.max.messages.kbytes": 8192,
    "queued.min.messages": 5000,
    "fetch.max.bytes": 4 * 1024 * 1024,
}
# What keeps each partition's order across retries: an idempotent producer, acks from every
# in-sync replica (both ENGINE_OWNED_KEYS: no passthrough can change them).
IDEMPOTENT: dict[str, Any] = {"enable.idempotence": True, "acks": "all"}


def cluster_config(bootstrap_servers: str, passthrough: Mapping[str, str]) -> dict[str, str]:
    """Where the brokers are, plus the KAFKA_* passthrough (may hold sasl.password)."""
    return {**passthrough, "bootstrap.servers": bootstrap_servers}


def settings_cluster(settings: Settings) -> dict[str, str]:
    return cluster_config(settings.bootstrap_servers, settings.kafka_extra)


def client_config(
    base: Mapping[str, Any],
    kind: ClientRole,
    *,
    defaults: Mapping[str, Any] | None = None,
    fixed: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The config of a client of `kind` on `base`: our `defaults`, then the keys of `base` that
    kind takes (the passthrough may change a default), then our `fixed` keys."""
    return {**(defaults or {}), **passthrough_for(base, kind), **(fixed or {})}


def consumer_config(settings: Settings, *, client_id: str | None = None) -> dict[str, Any]:
    """A group member's consumer: commits only what the engine says, never on its own."""
    defaults: dict[str, Any] = {
        "auto.offset.reset": "earliest",
        "enable.partition.eof": False,
        # KIP-848 `consumer` (default) or `classic`: only the keys that protocol accepts
        **group_protocol_config(settings.group_protocol),
        **PREFETCH_BOUND,
    }
    if client_id:
        defaults["client.id"] = client_id
    fixed: dict[str, Any] = {
        "group.id": settings.group_id,
        "enable.auto.commit": False,  # we commit only settled offsets
        "enable.auto.offset.store": False,
        "logger": LibrdkafkaLogger(),
    }
    return client_config(settings_cluster(settings), "member", defaults=defaults, fixed=fixed)


def producer_config(base: Mapping[str, Any], *, logs: bool = True) -> dict[str, Any]:
    """An idempotent producer (acks=all) on `base`; librdkafka's log lines go to structlog
    unless `logs` is False (the operator's commands keep librdkafka's own stderr lines)."""
    fixed: dict[str, Any] = {**IDEMPOTENT, **({"logger": LibrdkafkaLogger()} if logs else {})}
    return client_config(base, "producer", defaults={"linger.ms": 5}, fixed=fixed)


def reader_config(base: Mapping[str, Any], group_id: str) -> dict[str, Any]:
    """A consumer that never joins `group_id` and never commits on its own: side topics, the
    operator's commands. It reads from the first record still there when its start is gone."""
    fixed = {
        "group.id": group_id,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "logger": LibrdkafkaLogger(),
    }
    return client_config(base, "reader", fixed=fixed)


def admin_config(base: Mapping[str, Any]) -> dict[str, Any]:
    """An admin client (librdkafka makes it a producer handle: no consumer-only key). Its log
    lines go to structlog too: closing one with an answer unread makes librdkafka say so (an
    info line, BGQUEUE) on stderr, in the middle of the operator's output."""
    return client_config(base, "admin", fixed={"logger": LibrdkafkaLogger()})


class LibrdkafkaLogger:
    """Routes librdkafka's own log lines into structlog instead of raw stderr."""

    def log(self, level: int, fmt: str, *args: object) -> None:
        # confluent-kafka hands over Python logging levels (40 error, 30 warning, ...)
        message = fmt % args if args else fmt
        if level >= 40:
            _log.error("librdkafka_log", message=message)
        elif level >= 30:
            _log.warning("librdkafka_log", message=message)
