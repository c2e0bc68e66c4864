"""The Schema Registry's command-line options, shared by `run` and `publish`. [wiring]

Each option has an environment variable named after Confluent's client key
(`basic.auth.user.info` -> `SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from consumer.config.registry import RegistrySettings, load_registry_settings

_OPTIONS = (
    ("url", "Enables Confluent framing; user:password@ in it is basic auth."),
    ("basic-auth-user-info", "Basic auth as <user>:<password> (secret)."),
    ("bearer-auth-token", "Bearer token (secret), instead of basic auth."),
    ("bearer-auth-logical-cluster", "Logical cluster sent with the token (Confluent Cloud)."),
    ("ssl-ca-location", "CA bundle (file or directory) that signs the registry's certificate."),
    ("ssl-certificate-location", "Client certificate (PEM) for mutual TLS."),
    ("ssl-key-location", "Client private key (PEM), if not in the certificate file."),
    ("ssl-key-password", "Password of the client private key (secret)."),
)


def schema_registry_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add `--schema-registry-*` options (each with its SCHEMA_REGISTRY_* variable)."""
    for name, help_text in reversed(_OPTIONS):
        command = click.option(
            f"--schema-registry-{name}",
            envvar=f"SCHEMA_REGISTRY_{name.upper().replace('-', '_')}",
            default=None,
            show_envvar=True,
            help=help_text,
        )(command)
    return command


def pop_registry_settings(options: dict[str, Any]) -> RegistrySettings | None:
    """Take the registry options out of a command's `options`; validated settings, or None when
    no URL is given. Raises ConfigurationError naming the variable."""
    given = {
        name.replace("-", "_"): options.pop(f"schema_registry_{name.replace('-', '_')}", None)
        for name, _ in _OPTIONS
    }
    return load_registry_settings(**given)
