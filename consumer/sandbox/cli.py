"""`fulfillment-consumer sandbox` (also `python -m consumer.sandbox`): serve the stand-in.

Every flag has an environment variable (`SANDBOX_*`); the command blocks until SIGINT/SIGTERM.
"""

from __future__ import annotations

import click

from consumer.sandbox.config import FAULT_STATUSES, ConfigError, FaultSettings, SandboxConfig
from consumer.sandbox.server import serve

_RATE = click.FloatRange(0.0, 1.0)


@click.command("sandbox")
@click.option("--host", envvar="SANDBOX_HOST", default="127.0.0.1", show_default=True)
@click.option(
    "--port", envvar="SANDBOX_PORT", type=click.IntRange(0, 65535), default=8080, show_default=True
)
@click.option(
    "--latency-ms",
    envvar="SANDBOX_LATENCY_MS",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Delay before every API request is handled.",
)
@click.option(
    "--error-rate",
    envvar="SANDBOX_ERROR_RATE",
    type=_RATE,
    default=0.0,
    show_default=True,
    help="Share of API requests answered --error-status, unapplied.",
)
@click.option(
    "--error-status",
    envvar="SANDBOX_ERROR_STATUS",
    default="503",
    show_default=True,
    type=click.Choice([str(s) for s in sorted(FAULT_STATUSES)]),
)
@click.option(
    "--timeout-rate",
    envvar="SANDBOX_TIMEOUT_RATE",
    type=_RATE,
    default=0.0,
    show_default=True,
    help="Share of API requests held --timeout-hold s, unapplied.",
)
@click.option(
    "--timeout-hold",
    envvar="SANDBOX_TIMEOUT_HOLD",
    type=click.FloatRange(min=0),
    default=60.0,
    show_default=True,
    help="Seconds a timed-out request is held.",
)
@click.option(
    "--apply-then-fail-rate",
    envvar="SANDBOX_APPLY_THEN_FAIL_RATE",
    type=_RATE,
    default=0.0,
    show_default=True,
    help="Share of successful POSTs applied, then answered 500/502/503.",
)
@click.option(
    "--rate-limit",
    envvar="SANDBOX_RATE_LIMIT",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Requests/s per API key; 0 = no limit.",
)
@click.option(
    "--strict/--lenient",
    envvar="SANDBOX_STRICT",
    default=False,
    show_default=True,
    help="Strict: only seeded orders exist. Lenient: orders are made on first sight.",
)
@click.option(
    "--lenient-quantity",
    envvar="SANDBOX_LENIENT_QUANTITY",
    type=click.IntRange(1),
    default=1_000_000,
    show_default=True,
    help="Units ordered per line made on sight.",
)
@click.option(
    "--complete-after",
    envvar="SANDBOX_COMPLETE_AFTER",
    type=click.FloatRange(min=0),
    default=5.0,
    show_default=True,
    help="Seconds from `fulfilled` to `complete`.",
)
@click.option(
    "--seed",
    envvar="SANDBOX_SEED",
    type=int,
    default=0,
    show_default=True,
    help="Seed of the fault RNG.",
)
@click.option(
    "--api-key",
    "api_keys",
    envvar="SANDBOX_API_KEYS",
    multiple=True,
    help="Accepted secret key (repeatable). Default: any key starting sk_.",
)
@click.option(
    "--forbidden-key",
    "forbidden_keys",
    envvar="SANDBOX_FORBIDDEN_KEYS",
    multiple=True,
    help="A key answered 403 on every call (repeatable).",
)
def sandbox_command(
    *,
    host: str,
    port: int,
    latency_ms: float,
    error_rate: float,
    error_status: str,
    timeout_rate: float,
    timeout_hold: float,
    apply_then_fail_rate: float,
    rate_limit: float,
    strict: bool,
    lenient_quantity: int,
    complete_after: float,
    seed: int,
    api_keys: tuple[str, ...],
    forbidden_keys: tuple[str, ...],
) -> None:
    """Serve the local Digital River stand-in (POST/GET /fulfillments, GET /orders, /_admin)."""
    try:
        config = SandboxConfig(
            strict_orders=strict,
            lenient_quantity=lenient_quantity,
            api_keys=api_keys,
            forbidden_keys=forbidden_keys,
            complete_after_s=complete_after,
            faults=FaultSettings(
                latency_ms=latency_ms,
                error_rate=error_rate,
                error_status=int(error_status),
                timeout_rate=timeout_rate,
                timeout_hold_s=timeout_hold,
                apply_then_fail_rate=apply_then_fail_rate,
                rate_limit=rate_limit,
                seed=seed,
            ),
        )
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from exc
    mode = "strict" if strict else "lenient"
    click.echo(
        f"sandbox: http://{host}:{port} ({mode} orders, latency {latency_ms:g} ms, "
        f"rate limit {rate_limit:g}/s per key, admin at /_admin)"
    )
    serve(config, host, port)
