"""Settings: flags + environment -> one frozen, validated `Settings`. [pure]

Read once at the entry point (cli.py) and handed down. Every setting has an environment name
(PRODUCT.md's table is a contract); a bad value fails at start with a `ConfigurationError` that
names the environment variable. The key is a `Secret`: it never shows in repr, logs or errors.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypeVar
from urllib.parse import urlsplit

from consumer.core.errors import ConfigurationError
from consumer.core.lease import derived_lease_seconds

if TYPE_CHECKING:  # config/registry.py imports Secret from here
    from consumer.config.registry import RegistrySettings
from consumer.config.group_protocol import (
    DEFAULT_PROTOCOL,
    GroupProtocol,
    check_group_keys,
    check_group_protocol,
)

LogFormat = Literal["auto", "json", "console"]
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")

# KAFKA_* variables that are not librdkafka properties: ours, and the Kafka distribution's own
# script variables (container images often set them).
_NOT_PASSTHROUGH = frozenset(
    {
        "KAFKA_BOOTSTRAP_SERVERS",  # has its own flag
        "KAFKA_GROUP_PROTOCOL",  # has its own flag; the member sets `group.protocol` from it
        "KAFKA_HOME",
        "KAFKA_OPTS",
        "KAFKA_HEAP_OPTS",
        "KAFKA_JVM_PERFORMANCE_OPTS",
        "KAFKA_LOG4J_OPTS",
        "KAFKA_JMX_OPTS",
        "KAFKA_GC_LOG_OPTS",
        "KAFKA_DEBUG",
    }
)
# librdkafka properties the engine sets itself: a passthrough value would break a promise, so
# `librdkafka_passthrough` refuses it (naming the variable). A key that gets a named setting of
# its own (its KAFKA_* variable in _NOT_PASSTHROUGH, as KAFKA_BOOTSTRAP_SERVERS) is never looked
# up here.
ENGINE_OWNED_KEYS: Mapping[str, str] = {
    "metadata.broker.list": "use KAFKA_BOOTSTRAP_SERVERS",  # (bootstrap.servers' alias)
    "group.id": "use CONSUMER_GROUP",
    "enable.auto.commit": "the engine commits only settled offsets",
    "auto.commit.enable": "the engine commits only settled offsets",
    "enable.auto.offset.store": "the engine stores only settled offsets",
    "partition.assignment.strategy": "the engine relies on cooperative (incremental) rebalancing",
    "enable.idempotence": "side topics keep each partition's order only with idempotence",
    "acks": "side-topic writes count only once every in-sync replica has them (acks=all)",
    "request.required.acks": "side-topic writes count only once every in-sync replica has them",
}
# What Kubernetes injects for every Service in the namespace (enableServiceLinks): a Service
# named kafka or kafka-... gives KAFKA_SERVICE_HOST, KAFKA_PORT=tcp://..., KAFKA_PORT_9092_TCP_ADDR.
_SERVICE_LINK = re.compile(
    r"KAFKA_(?:[A-Z0-9_]+_)?(?:SERVICE_HOST|SERVICE_PORT(?:_[A-Z0-9_]+)?"
    r"|PORT|PORT_[0-9]+_(?:TCP|UDP|SCTP)(?:_PROTO|_PORT|_ADDR)?)"
)
# Group membership: only a member's consumer may carry these; a consumer that never joins (side
# readers, replay) would be taken for a member (group.instance.id) or warned about them.
MEMBERSHIP_KEYS = frozenset(
    {
        "group.instance.id",
        "partition.assignment.strategy",
        "group.protocol",
        "group.protocol.type",
        "group.remote.assignor",
        "session.timeout.ms",
        "heartbeat.interval.ms",
        "coordinator.query.interval.ms",
        "max.poll.interval.ms",
    }
)
# librdkafka's consumer-only (C) and producer-only (P) properties (its CONFIGURATION.md): the
# other kind of client logs a warning for each and ignores it.
CONSUMER_ONLY_KEYS = MEMBERSHIP_KEYS | {
    "group.id",
    "enable.auto.commit",
    "auto.commit.enable",
    "auto.commit.interval.ms",
    "enable.auto.offset.store",
    "queued.min.messages",
    "queued.max.messages.kbytes",
    "fetch.wait.max.ms",
    "fetch.queue.backoff.ms",
    "fetch.message.max.bytes",
    "max.partition.fetch.bytes",
    "fetch.max.bytes",
    "fetch.min.bytes",
    "fetch.error.backoff.ms",
    "offset.store.method",
    "offset.store.path",
    "offset.store.sync.interval.ms",
    "isolation.level",
    "enable.partition.eof",
    "check.crcs",
    "auto.offset.reset",
    "consume.callback.max.messages",
}
PRODUCER_ONLY_KEYS = frozenset(
    {
        "transactional.id",
        "transaction.timeout.ms",
        "enable.idempotence",
        "enable.gapless.guarantee",
        "queue.buffering.max.messages",
        "queue.buffering.max.kbytes",
        "queue.buffering.max.ms",
        "linger.ms",
        "message.send.max.retries",
        "retries",
        "queue.buffering.backpressure.threshold",
        "compression.codec",
        "compression.type",
        "compression.level",
        "batch.num.messages",
        "batch.size",
        "delivery.report.only.error",
        "sticky.partitioning.linger.ms",
        "request.required.acks",
        "acks",
        "request.timeout.ms",
        "message.timeout.ms",
        "delivery.timeout.ms",
        "queuing.strategy",
        "produce.offset.report",
        "partitioner",
    }
)
ClientRole = Literal["member", "reader", "producer", "admin"]
V = TypeVar("V")
LIVE_RATE_LIMIT = 250.0
TEST_RATE_LIMIT = 25.0


class Secret:
    """A value that prints as `***`. Call `reveal()` where it is really needed (the auth header)."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything `run` needs; built by `load_settings`."""

    bootstrap_servers: str
    topic: str
    group_id: str
    dlq_topic: str
    parking_topic: str
    dr_api_url: str
    dr_api_key: Secret = field(repr=False)
    dr_rate_limit: float
    dr_api_version: str | None
    dr_timeout: float
    schema_registry: RegistrySettings | None  # None: no registry (single-object encoding only)
    max_in_flight: int
    max_buffered_per_partition: int
    commit_interval: float
    drain_timeout: float
    health_port: int
    log_format: LogFormat
    dlq_max_ratio: float
    kafka_extra: Mapping[str, str] = field(
        default_factory=dict, repr=False
    )  # may hold sasl.password
    log_level: str = "INFO"
    fencing_lease: float = 30.0  # seconds a member may post after its last confirmed poll/commit
    dedupe_topic: str = ""  # changelog of applied event ids; "" -> `<topic>.applied`
    dedupe_window_hours: float = 168.0
    dr_ca_bundle: str | None = None  # PEM: CAs trusted for Digital River instead of the system's
    dr_max_connections: int = 64  # the HTTP pool's cap; more requests wait for a free connection
    group_protocol: GroupProtocol = DEFAULT_PROTOCOL

    def masked(self) -> dict[str, object]:
        """Every setting, printable: secrets and passthrough values that look secret are masked."""
        shown: dict[str, object] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Secret):
                value = "***"
            elif f.name == "kafka_extra":
                value = {k: ("***" if _looks_secret(k) else v) for k, v in value.items()}
            elif f.name == "schema_registry" and value is not None:
                value = value.masked()
            shown[f.name] = value
        return shown


def _looks_secret(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in ("password", "secret", "key", "token", "jaas"))


def librdkafka_passthrough(environ: Mapping[str, str]) -> dict[str, str]:
    """`KAFKA_SECURITY_PROTOCOL=SSL` -> `{"security.protocol": "SSL"}`.

    Ours, the Kafka distribution's and Kubernetes' service-link variables are skipped; a key in
    ENGINE_OWNED_KEYS raises ConfigurationError naming its variable.
    """
    found: dict[str, str] = {}
    for name, value in environ.items():
        if not name.startswith("KAFKA_") or name in _NOT_PASSTHROUGH or value == "":
            continue
        if _SERVICE_LINK.fullmatch(name):
            continue
        key = name[len("KAFKA_") :].lower().replace("_", ".")
        if key in ENGINE_OWNED_KEYS:
            raise ConfigurationError(
                f"{key} is set by the consumer ({ENGINE_OWNED_KEYS[key]}); unset it", setting=name
            )
        found[key] = value
    return found


def passthrough_for(extra: Mapping[str, V], role: ClientRole) -> dict[str, V]:
    """The one filter of librdkafka keys by kind of client: the keys of `extra` a client of
    `role` takes. A group `member`'s consumer, a `reader` (a consumer that never joins a group:
    side topics, replay, status), a `producer` or an `admin` client (librdkafka makes it a
    producer). Keys for the other kind of client are dropped instead of warned about; every
    other key, ours (`bootstrap.servers`) included, is kept. `consumer.kafka.configs` builds
    every client with it."""
    if role in ("producer", "admin"):
        return {k: v for k, v in extra.items() if k not in CONSUMER_ONLY_KEYS}
    dropped = PRODUCER_ONLY_KEYS if role == "member" else PRODUCER_ONLY_KEYS | MEMBERSHIP_KEYS
    return {k: v for k, v in extra.items() if k not in dropped}


def read_api_key(key: str | None, key_file: str | None) -> Secret:
    """DR_API_KEY, or the contents of DR_API_KEY_FILE (a mounted Kubernetes secret)."""
    if key and key_file:
        raise ConfigurationError(
            "give DR_API_KEY or DR_API_KEY_FILE, not both", setting="DR_API_KEY_FILE"
        )
    if key_file:
        try:
            key = Path(key_file).read_text().strip()
        except OSError as exc:
            raise ConfigurationError(
                f"cannot read the key file ({exc.strerror})", setting="DR_API_KEY_FILE"
            ) from None
    if not key:
        raise ConfigurationError("a Digital River secret key is required", setting="DR_API_KEY")
    if not key.startswith("sk_"):
        raise ConfigurationError(
            "a Digital River secret key starts with sk_ (sk_test_ in test mode)",
            setting="DR_API_KEY",
        )
    return Secret(key)


def default_rate_limit(key: Secret) -> float:
    return TEST_RATE_LIMIT if key.reveal().startswith("sk_test_") else LIVE_RATE_LIMIT


def check_dr_url(url: str, *, allow_insecure_http: bool) -> str:
    """https always; plain http only to loopback (the sandbox) or when explicitly allowed."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(f"not an http(s) URL: {url!r}", setting="DR_API_URL")
    if parts.scheme == "http" and not (allow_insecure_http or _is_loopback(parts.hostname)):
        raise ConfigurationError(
            "plain http is refused except to a loopback host (the sandbox); use https",
            setting="DR_API_URL",
        )
    return url.rstrip("/")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def require_positive(value: float, setting: str) -> None:
    if not value > 0:  # also refuses NaN, which compares false to everything
        raise ConfigurationError(f"must be greater than 0, got {value}", setting=setting)


def check_port(value: int, setting: str) -> None:
    if not 0 <= value <= 65535:
        raise ConfigurationError(f"not a TCP port: {value}", setting=setting)


def check_topic(value: str, setting: str) -> str:
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
    if not value or value in (".", "..") or len(value) > 249 or not set(value) <= allowed:
        raise ConfigurationError(f"not a valid Kafka topic name: {value!r}", setting=setting)
    return value


def load_settings(
    *,
    bootstrap_servers: str,
    topic: str,
    group_id: str,
    dlq_topic: str | None,
    parking_topic: str | None,
    dr_api_url: str,
    dr_api_key: str | None,
    dr_api_key_file: str | None,
    dr_rate_limit: float | None,
    dr_api_version: str | None,
    dr_timeout: float,
    allow_insecure_http: bool,
    schema_registry: RegistrySettings | None,
    max_in_flight: int,
    max_buffered_per_partition: int,
    commit_interval: float,
    drain_timeout: float,
    health_port: int,
    log_format: LogFormat,
    environ: Mapping[str, str],
    dlq_max_ratio: float = 0.5,
    log_level: str = "INFO",
    fencing_lease: float | None = None,
    dedupe_topic: str | None = None,
    dedupe_window_hours: float = 168.0,
    dr_ca_bundle: str | None = None,
    dr_max_connections: int = 64,
    group_protocol: str = DEFAULT_PROTOCOL,
) -> Settings:
    """Validate everything once; raise ConfigurationError naming the first bad setting."""
    if not bootstrap_servers.strip():
        raise ConfigurationError(
            "at least one broker is required", setting="KAFKA_BOOTSTRAP_SERVERS"
        )
    check_topic(topic, "FULFILLMENT_TOPIC")
    if not group_id.strip():
        raise ConfigurationError("a consumer group id is required", setting="CONSUMER_GROUP")
    key = read_api_key(dr_api_key, dr_api_key_file)
    rate = default_rate_limit(key) if dr_rate_limit is None else dr_rate_limit
    require_positive(rate, "DR_RATE_LIMIT")
    require_positive(dr_timeout, "DR_TIMEOUT_SECONDS")
    require_positive(max_in_flight, "MAX_IN_FLIGHT_ORDERS")
    require_positive(max_buffered_per_partition, "MAX_BUFFERED_PER_PARTITION")
    require_positive(commit_interval, "COMMIT_INTERVAL_SECONDS")
    require_positive(drain_timeout, "DRAIN_TIMEOUT_SECONDS")
    check_port(health_port, "HEALTH_PORT")
    require_positive(dedupe_window_hours, "DEDUPE_WINDOW_HOURS")
    if not 0 < dlq_max_ratio <= 1:
        raise ConfigurationError(f"must be in (0, 1], got {dlq_max_ratio}", setting="DLQ_MAX_RATIO")
    extra = librdkafka_passthrough(environ)
    protocol = check_group_protocol(group_protocol)
    check_group_keys(protocol, extra)
    lease = _fencing_lease(fencing_lease, extra.get("session.timeout.ms"))
    if log_level.upper() not in LOG_LEVELS:
        raise ConfigurationError(
            f"one of {', '.join(LOG_LEVELS)}, got {log_level!r}", setting="LOG_LEVEL"
        )
    require_positive(dr_max_connections, "DR_MAX_CONNECTIONS")
    if dr_ca_bundle and not Path(dr_ca_bundle).is_file():
        raise ConfigurationError(f"no such file: {dr_ca_bundle!r}", setting="DR_CA_BUNDLE")
    return Settings(
        bootstrap_servers=bootstrap_servers,
        topic=topic,
        group_id=group_id,
        dlq_topic=check_topic(dlq_topic or f"{topic}.dlq", "DLQ_TOPIC"),
        parking_topic=check_topic(parking_topic or f"{topic}.parked", "PARKING_TOPIC"),
        dr_api_url=check_dr_url(dr_api_url, allow_insecure_http=allow_insecure_http),
        dr_api_key=key,
        dr_rate_limit=rate,
        dr_api_version=dr_api_version or None,
        dr_timeout=dr_timeout,
        schema_registry=schema_registry,  # validated by config/registry.py load_registry_settings
        max_in_flight=max_in_flight,
        max_buffered_per_partition=max_buffered_per_partition,
        commit_interval=commit_interval,
        drain_timeout=drain_timeout,
        health_port=health_port,
        log_format=log_format,
        dlq_max_ratio=dlq_max_ratio,
        kafka_extra=extra,
        log_level=log_level.upper(),
        fencing_lease=lease,
        dedupe_topic=check_topic(dedupe_topic or f"{topic}.applied", "DEDUPE_TOPIC"),
        dedupe_window_hours=dedupe_window_hours,
        dr_ca_bundle=dr_ca_bundle or None,
        dr_max_connections=dr_max_connections,
        group_protocol=protocol,
    )


def _fencing_lease(given: float | None, session_timeout_ms: str | None) -> float:
    """FENCING_LEASE_SECONDS, else derived from KAFKA_SESSION_TIMEOUT_MS (librdkafka's 45 s when
    unset; under the KIP-848 protocol the broker's group.consumer.session.timeout.ms rules, and a
    lower broker setting needs FENCING_LEASE_SECONDS set to match)."""
    session_ms: int | None = None
    if session_timeout_ms is not None:
        if not session_timeout_ms.isdigit() or int(session_timeout_ms) <= 0:
            raise ConfigurationError(
                f"not a positive number of milliseconds: {session_timeout_ms!r}",
                setting="KAFKA_SESSION_TIMEOUT_MS",
            )
        session_ms = int(session_timeout_ms)
    if given is None:
        return derived_lease_seconds(session_ms)
    require_positive(given, "FENCING_LEASE_SECONDS")
    if session_ms is not None and given >= session_ms / 1000:
        raise ConfigurationError(
            f"must be shorter than the session timeout ({session_ms} ms), got {given}",
            setting="FENCING_LEASE_SECONDS",
        )
    return given
