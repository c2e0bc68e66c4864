"""`fulfillment-consumer`: the one place where real objects are built and wired.

Subcommands: `run` (a consumer-group member), `publish` and `simulate` (warehouse side),
`sandbox` (the local Digital River stand-in), `demo` (everything local, end to end).
Tools are loaded lazily so a production install needs none of the sandbox's libraries.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import random
import signal
import socket
import sys
from typing import Any

import click
import structlog

from consumer.codec.avro import EventCodec, SchemaStore
from consumer.config.settings import LOG_LEVELS, Settings, load_settings
from consumer.core.budget import TokenBucket
from consumer.core.errors import ConfigurationError, InfrastructureError
from consumer.core.outcomes import RetryPolicy
from consumer.digitalriver.client import DigitalRiverClient
from consumer.digitalriver.delivery import FulfillmentSender
from consumer.kafka.changelog import HOUR_MS, AppliedLog
from consumer.kafka.configs import consumer_config, producer_config, settings_cluster
from consumer.kafka.schema_registry import SchemaRegistry
from consumer.kafka.source import KafkaSource
from consumer.kafka.writer import RecordWriter
from consumer.member.engine import Engine
from consumer.ops.health import HealthServer
from consumer.ops.logs import configure_logging
from consumer.ops.metrics import Metrics
from consumer.tools.options import (
    BadSetting,
    EnvCommand,
    group_option,
    kafka_options,
)
from consumer.tools.registry_options import pop_registry_settings, schema_registry_options

_log = structlog.get_logger("cli")

_LAZY = {
    "publish": ("consumer.tools.warehouse.cli", "publish_command"),
    "simulate": ("consumer.tools.warehouse.cli", "simulate_command"),
    "sandbox": ("consumer.sandbox.cli", "sandbox_command"),
    "demo": ("consumer.tools.demo", "demo_command"),
    "replay": ("consumer.tools.replay", "replay_command"),
    "redrive": ("consumer.tools.redrive", "redrive_command"),
    "status": ("consumer.tools.status", "status_command"),
}


class _Commands(click.Group):
    """Built-in commands plus tools imported only when called."""

    command_class = EnvCommand

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *_LAZY])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in _LAZY:
            module, attr = _LAZY[cmd_name]
            try:
                command: click.Command = getattr(importlib.import_module(module), attr)
            except ImportError as exc:
                raise click.ClickException(
                    f"`{cmd_name}` needs the sandbox extra: "
                    f"pip install 'fulfillment-consumer[sandbox]' ({exc})"
                ) from exc
            return command
        return super().get_command(ctx, cmd_name)


@click.group(
    cls=_Commands,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(package_name="fulfillment-consumer")
def main() -> None:
    """Warehouse shipment and cancellation events on Kafka -> Digital River fulfillments."""


@main.command()
@kafka_options
@group_option
@click.option(
    "--kafka-group-protocol",
    "--group-protocol",
    "group_protocol",
    envvar="KAFKA_GROUP_PROTOCOL",
    default="consumer",
    show_default=True,
    help="consumer (KIP-848, Kafka 4.0+) or classic (cooperative-sticky, older brokers).",
)
@click.option(
    "--dlq-topic",
    envvar="DLQ_TOPIC",
    default=None,
    help="Dead-letter topic [default: <topic>.dlq].",
)
@click.option(
    "--parking-topic",
    envvar="PARKING_TOPIC",
    default=None,
    help="Parked orders [default: <topic>.parked].",
)
@click.option(
    "--dr-api-url", envvar="DR_API_URL", default="https://api.digitalriver.com", show_default=True
)
@click.option(
    "--dr-api-key", envvar="DR_API_KEY", default=None, help="Secret key (or --dr-api-key-file)."
)
@click.option(
    "--dr-api-key-file", envvar="DR_API_KEY_FILE", default=None, help="File holding the secret key."
)
@click.option(
    "--dr-rate-limit",
    envvar="DR_RATE_LIMIT",
    type=float,
    default=None,
    help="Requests/s for the whole group [default: 25 for sk_test_ keys, else 250].",
)
@click.option(
    "--dr-api-version",
    envvar="DR_API_VERSION",
    default="2021-12-13",
    show_default=True,
    help="DigitalRiver-Version header; empty to use the key's pinned version.",
)
@click.option(
    "--dr-timeout-seconds",
    "--dr-timeout",
    "dr_timeout",
    envvar="DR_TIMEOUT_SECONDS",
    type=float,
    default=15.0,
    show_default=True,
)
@click.option(
    "--dr-ca-bundle",
    envvar="DR_CA_BUNDLE",
    default=None,
    help="PEM file of the CAs trusted for DR_API_URL and an https proxy (HTTPS_PROXY) "
    "instead of the system's.",
)
@click.option(
    "--dr-max-connections",
    envvar="DR_MAX_CONNECTIONS",
    type=int,
    default=64,
    show_default=True,
    help="Connections to Digital River per member: about POSTs/s x latency.",
)
@click.option(
    "--dr-allow-insecure-http",
    "--allow-insecure-http",
    "allow_insecure_http",
    envvar="DR_ALLOW_INSECURE_HTTP",
    is_flag=True,
    default=False,
    help="Allow plain http to a non-loopback DR_API_URL (the compose sandbox only).",
)
@schema_registry_options
@click.option(
    "--max-in-flight-orders",
    "--max-in-flight",
    "max_in_flight",
    envvar="MAX_IN_FLIGHT_ORDERS",
    type=int,
    default=256,
    show_default=True,
    help="Orders with a request in flight at once, per member.",
)
@click.option(
    "--max-buffered-per-partition",
    "--max-buffered",
    "max_buffered",
    envvar="MAX_BUFFERED_PER_PARTITION",
    type=int,
    default=2000,
    show_default=True,
    help="Unsettled records per partition before it is paused.",
)
@click.option(
    "--commit-interval-seconds",
    "--commit-interval",
    "commit_interval",
    envvar="COMMIT_INTERVAL_SECONDS",
    type=float,
    default=1.0,
    show_default=True,
)
@click.option(
    "--drain-timeout-seconds",
    "--drain-timeout",
    "drain_timeout",
    envvar="DRAIN_TIMEOUT_SECONDS",
    type=float,
    default=20.0,
    show_default=True,
    help="How long revoke and shutdown wait for requests in flight.",
)
@click.option(
    "--health-port",
    envvar="HEALTH_PORT",
    type=int,
    default=8000,
    show_default=True,
    help="Port of /metrics, /healthz and /readyz (0: any free port).",
)
@click.option(
    "--dlq-max-ratio",
    envvar="DLQ_MAX_RATIO",
    type=float,
    default=0.5,
    show_default=True,
    help="Stop (exit 4) when more than this share of the last 200 records were bad.",
)
@click.option(
    "--fencing-lease-seconds",
    "--fencing-lease",
    "fencing_lease",
    envvar="FENCING_LEASE_SECONDS",
    type=float,
    default=None,
    help="Seconds a member may post after its last confirmed poll or commit "
    "[default: 2/3 of KAFKA_SESSION_TIMEOUT_MS, or of 45 s].",
)
@click.option(
    "--dedupe-topic",
    envvar="DEDUPE_TOPIC",
    default=None,
    help="Changelog of applied event ids, a partition per input partition "
    "[default: <topic>.applied].",
)
@click.option(
    "--dedupe-window-hours",
    envvar="DEDUPE_WINDOW_HOURS",
    type=float,
    default=168.0,
    show_default=True,
    help="How long an applied eventId is recognised as a duplicate (the changelog's retention).",
)
@click.option(
    "--log-format",
    envvar="LOG_FORMAT",
    type=click.Choice(["auto", "json", "console"]),
    default="auto",
    show_default=True,
)
@click.option(
    "--log-level",
    envvar="LOG_LEVEL",
    type=click.Choice(LOG_LEVELS, case_sensitive=False),
    default="INFO",
    show_default=True,
)
@click.option("--print-config", is_flag=True, help="Print the settings (secrets masked) and exit.")
def run(**options: Any) -> None:
    """Run one member of the consumer group until SIGTERM/SIGINT."""

    settings = _settings_or_exit(options)
    if options["print_config"]:
        click.echo(json.dumps(settings.masked(), indent=2, default=str))
        return
    configure_logging(settings.log_format, settings.log_level)
    try:
        code = asyncio.run(_run_member(settings))
    except ConfigurationError as exc:  # found at start, e.g. a side topic with too few partitions
        raise BadSetting(exc) from None
    sys.exit(code)


def _settings_or_exit(options: dict[str, Any]) -> Settings:

    try:
        registry = pop_registry_settings(options)
        return load_settings(
            bootstrap_servers=options["bootstrap_servers"],
            topic=options["topic"],
            group_id=options["group"],
            dlq_topic=options["dlq_topic"],
            parking_topic=options["parking_topic"],
            dr_api_url=options["dr_api_url"],
            dr_api_key=options["dr_api_key"],
            dr_api_key_file=options["dr_api_key_file"],
            dr_rate_limit=options["dr_rate_limit"],
            dr_api_version=options["dr_api_version"],
            dr_timeout=options["dr_timeout"],
            allow_insecure_http=options["allow_insecure_http"],
            schema_registry=registry,
            max_in_flight=options["max_in_flight"],
            max_buffered_per_partition=options["max_buffered"],
            commit_interval=options["commit_interval"],
            drain_timeout=options["drain_timeout"],
            health_port=options["health_port"],
            log_format=options["log_format"],
            dlq_max_ratio=options["dlq_max_ratio"],
            log_level=options["log_level"],
            fencing_lease=options["fencing_lease"],
            dedupe_topic=options["dedupe_topic"],
            dedupe_window_hours=options["dedupe_window_hours"],
            dr_ca_bundle=options["dr_ca_bundle"],
            dr_max_connections=options["dr_max_connections"],
            group_protocol=options["group_protocol"],
            environ=os.environ,
        )
    except ConfigurationError as exc:
        raise BadSetting(exc) from None


async def _run_member(settings: Settings) -> int:

    try:
        registry = SchemaRegistry(settings.schema_registry) if settings.schema_registry else None
    except ConfigurationError as exc:
        raise BadSetting(exc) from None
    codec = EventCodec(SchemaStore.load_default(), registry=registry)
    try:
        dr = DigitalRiverClient(
            settings.dr_api_url,
            settings.dr_api_key,
            api_version=settings.dr_api_version,
            timeout=settings.dr_timeout,
            max_connections=settings.dr_max_connections,
            ca_bundle=settings.dr_ca_bundle,
            user_agent=f"fulfillment-consumer ({socket.gethostname()}; pid {os.getpid()})",
        )
    except ConfigurationError as exc:  # a CA bundle that is not PEM
        raise BadSetting(exc) from None
    rng = random.Random()
    try:
        source = KafkaSource(consumer_config(settings), settings.topic)
        side = RecordWriter(producer_config(settings_cluster(settings)))
    except InfrastructureError as exc:
        raise click.ClickException(str(exc)) from None
    loop = asyncio.get_running_loop()

    def sender(budget: TokenBucket) -> FulfillmentSender:
        return FulfillmentSender(
            dr, budget, policy=RetryPolicy(), clock=loop.time, rng=rng, metrics=metrics
        )

    metrics = Metrics()
    health = HealthServer(metrics, settings.health_port)
    try:
        health.start()
    except OSError as exc:
        raise click.ClickException(
            f"HEALTH_PORT: cannot listen on {settings.health_port}: {exc.strerror}"
        ) from None
    _log.info("health_listening", port=health.port)
    cluster = settings_cluster(settings)  # each client built from it takes its kind's keys
    applied = AppliedLog(
        side,
        settings.dedupe_topic,
        window_ms=int(settings.dedupe_window_hours * HOUR_MS),
        reader_config=cluster,
    )
    engine = Engine(
        settings,
        source,
        side,
        sender,
        codec,
        applied=applied,
        metrics=metrics,
        health=health,
        side_reader_config=cluster,
        clock=loop.time,
        rng=rng,
    )
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        return await engine.run(stop)
    finally:
        await dr.aclose()
        if registry is not None:
            await registry.aclose()
        health.stop()
