"""Click options and conventions every command shares: the Kafka options, the KAFKA_* passthrough,
commands that show their environment variable and name it when its value is refused (exit 2).

Shared by cli.py and the tools, so a tool never imports cli.py (cli.py imports the tools).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click
from click.core import ParameterSource

from consumer.config.settings import librdkafka_passthrough
from consumer.core.errors import ConfigurationError, InfrastructureError
from consumer.kafka.configs import cluster_config

EXIT_BAD_SETTING = 2  # as click's usage errors (a bad value in the environment is one too)


class BadSetting(click.UsageError):
    """A setting refused at start; the message names its environment variable."""

    exit_code = EXIT_BAD_SETTING

    def __init__(self, error: ConfigurationError) -> None:
        super().__init__(f"configuration: {error}")


class EnvCommand(click.Command):
    """A command whose options show their environment variable in --help and whose bad values
    name that variable, not the flag, when they came from the environment (exit 2)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:
            if isinstance(param, click.Option) and param.envvar:
                param.show_envvar = True

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.BadParameter as exc:
            param = exc.param
            if (
                param is not None
                and param.name is not None
                and isinstance(param.envvar, str)
                and ctx.get_parameter_source(param.name) is ParameterSource.ENVIRONMENT
            ):
                exc.param_hint = param.envvar
            raise


@contextmanager
def infrastructure_errors_reported() -> Iterator[None]:
    """An InfrastructureError (a broker or service that would not do its part) raised inside
    becomes click's error: its message on stderr, exit 1."""
    try:
        yield
    except InfrastructureError as exc:
        raise click.ClickException(str(exc)) from exc


def kafka_options(fn: Any) -> Any:
    fn = click.option(
        "--kafka-bootstrap-servers",
        "--bootstrap-servers",
        "bootstrap_servers",
        envvar="KAFKA_BOOTSTRAP_SERVERS",
        default="127.0.0.1:9092",
        show_default=True,
        help="Kafka brokers. Other KAFKA_* variables go to librdkafka.",
    )(fn)
    fn = click.option(
        "--fulfillment-topic",
        "--topic",
        "topic",
        envvar="FULFILLMENT_TOPIC",
        default="warehouse.fulfillment-events",
        show_default=True,
        help="Input topic.",
    )(fn)
    return fn


def group_option(fn: Any) -> Any:
    """`--consumer-group` / `--group` (CONSUMER_GROUP): the group a command runs as or acts on."""
    return click.option(
        "--consumer-group",
        "--group",
        "group",
        envvar="CONSUMER_GROUP",
        default="fulfillment-consumer",
        show_default=True,
        help="Consumer group id.",
    )(fn)


def kafka_cluster(bootstrap_servers: str) -> dict[str, str]:
    """The cluster config of a command: the brokers and the environment's KAFKA_* passthrough
    (each client built from it takes its kind's keys: `consumer.kafka.configs`). A refused
    variable is a configuration error (exit 2) naming it."""
    try:
        return cluster_config(bootstrap_servers, librdkafka_passthrough(os.environ))
    except ConfigurationError as exc:
        raise BadSetting(exc) from None
