"""`run`'s options follow one convention: each has an environment variable, shown in --help,
named like the flag; a bad value names the variable and exits 2."""

from __future__ import annotations

import os
from typing import Any

import click
import pytest
from click.testing import CliRunner

from consumer.cli import main, run
from consumer.tools.options import EXIT_BAD_SETTING
from consumer.tools.redrive import redrive_command
from consumer.tools.replay import replay_command
from consumer.tools.status import status_command

TEST_KEY = "sk_test_Zq7xDistinctiveSecretValue42"


def _options() -> list[click.Option]:
    return [p for p in run.params if isinstance(p, click.Option) and p.envvar]


def invoke(args: list[str], env: dict[str, str]) -> Any:
    """Only `env` among the variables `run` reads (none inherited from this shell)."""
    ours: dict[str, str | None] = {str(o.envvar): None for o in _options()}
    ours.update({name: None for name in os.environ if name.startswith("KAFKA_")})
    return CliRunner().invoke(main, args, env={**ours, **env}, terminal_width=200)


def test_every_run_option_but_print_config_has_an_environment_variable() -> None:
    without = {p.name for p in run.params if isinstance(p, click.Option) and not p.envvar}
    assert without == {"print_config"}


def test_run_help_shows_each_options_environment_variable() -> None:
    result = invoke(["run", "--help"], {})
    assert result.exit_code == 0
    for option in _options():
        assert f"env var: {option.envvar}" in result.output, option.name


def _operator_options() -> list[tuple[str, click.Option]]:
    commands = [run, replay_command, status_command, redrive_command]
    return [
        (str(command.name), p)
        for command in commands
        for p in command.params
        if isinstance(p, click.Option) and p.envvar
    ]


@pytest.mark.parametrize(
    ("command", "option"), _operator_options(), ids=lambda v: v if isinstance(v, str) else v.name
)
def test_each_flag_is_its_variable_in_kebab_case(command: str, option: click.Option) -> None:
    assert isinstance(option.envvar, str)
    assert "--" + option.envvar.lower().replace("_", "-") in option.opts, command


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DR_RATE_LIMIT", "fast"),
        ("MAX_IN_FLIGHT_ORDERS", "many"),
        ("LOG_FORMAT", "xml"),
        ("LOG_LEVEL", "chatty"),
        ("HEALTH_PORT", "http"),
    ],
)
def test_a_bad_value_in_the_environment_names_the_variable_not_the_flag(
    variable: str, value: str
) -> None:
    result = invoke(["run", "--print-config"], {"DR_API_KEY": TEST_KEY, variable: value})
    assert result.exit_code == EXIT_BAD_SETTING == 2
    assert f"Invalid value for {variable}:" in result.output
    flag = "--" + variable.lower().replace("_", "-")
    assert flag not in result.output


def test_a_refused_value_names_the_variable_and_exits_with_the_configuration_code() -> None:
    result = invoke(["run", "--print-config", "--dr-rate-limit", "0"], {"DR_API_KEY": TEST_KEY})
    assert result.exit_code == EXIT_BAD_SETTING
    assert "DR_RATE_LIMIT: must be greater than 0" in result.output


def test_log_level_is_a_setting_read_from_the_environment() -> None:
    result = invoke(["run", "--print-config"], {"DR_API_KEY": TEST_KEY, "LOG_LEVEL": "debug"})
    assert result.exit_code == 0, result.output
    assert '"log_level": "DEBUG"' in result.output


def test_the_old_short_flags_still_work() -> None:
    result = invoke(
        ["run", "--print-config", "--topic", "t", "--group", "g", "--max-in-flight", "3"],
        {"DR_API_KEY": TEST_KEY},
    )
    assert result.exit_code == 0, result.output
    assert '"topic": "t"' in result.output
    assert '"group_id": "g"' in result.output
    assert '"max_in_flight": 3' in result.output
