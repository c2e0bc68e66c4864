"""Schema Registry settings: URL, basic auth, bearer token, mTLS. [pure]

Names follow the Confluent client's configuration keys (`basic.auth.user.info` is
`SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO`, `ssl.ca.location` is `SCHEMA_REGISTRY_SSL_CA_LOCATION`, ...)
so a team that configured Confluent's serializers recognises them. Every secret is a `Secret`,
including the URL: `https://user:pass@host` may carry credentials (Confluent's client reads them
as basic auth) and prints as `https://user:***@host`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from consumer.config.settings import Secret
from consumer.core.errors import ConfigurationError

URL_SETTING = "SCHEMA_REGISTRY_URL"


@dataclass(frozen=True, slots=True)
class RegistrySettings:
    """How to reach the registry. `client_config()` is what Confluent's client is built from."""

    url: Secret = field(repr=False)  # comma-separated URLs, possibly with user:password@
    basic_auth_user_info: Secret | None = field(default=None, repr=False)
    bearer_auth_token: Secret | None = field(default=None, repr=False)
    bearer_auth_logical_cluster: str | None = None
    ssl_ca_location: str | None = None
    ssl_certificate_location: str | None = None
    ssl_key_location: str | None = None
    ssl_key_password: Secret | None = field(default=None, repr=False)
    timeout: float = 10.0

    @property
    def credentials_setting(self) -> str:
        """The variable to fix when the registry refuses who we are."""
        if self.bearer_auth_token is not None:
            return "SCHEMA_REGISTRY_BEARER_AUTH_TOKEN"
        if self.basic_auth_user_info is not None:
            return "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO"
        if self.ssl_certificate_location is not None:
            return "SCHEMA_REGISTRY_SSL_CERTIFICATE_LOCATION"
        return URL_SETTING

    def secrets(self) -> list[str]:
        """Every secret's text (for scrubbing error messages), longest first."""
        found = [s.reveal() for s in (self.basic_auth_user_info, self.bearer_auth_token,
                                      self.ssl_key_password) if s is not None]  # fmt: skip
        for url in self.url.reveal().split(","):
            password = urlsplit(url.strip()).password
            if password:
                found += [password, unquote(password)]
        return sorted({s for s in found if s}, key=len, reverse=True)

    def masked(self) -> dict[str, object]:
        """Printable: secrets as `***`, URL credentials as `user:***@`."""
        return {
            "url": mask_url(self.url.reveal()),
            "basic_auth_user_info": _masked_user_info(self.basic_auth_user_info),
            "bearer_auth_token": None if self.bearer_auth_token is None else "***",
            "bearer_auth_logical_cluster": self.bearer_auth_logical_cluster,
            "ssl_ca_location": self.ssl_ca_location,
            "ssl_certificate_location": self.ssl_certificate_location,
            "ssl_key_location": self.ssl_key_location,
            "ssl_key_password": None if self.ssl_key_password is None else "***",
            "timeout": self.timeout,
        }

    def client_config(self) -> dict[str, Any]:
        """Confluent's `AsyncSchemaRegistryClient` configuration, secrets revealed."""
        # Credentials leave the URL for basic.auth.user.info (Confluent's client reads the first
        # URL's the same way): the HTTP library logs request URLs, and those must not carry them.
        urls = self.url.reveal()
        conf: dict[str, Any] = {"url": _USERINFO.sub("://", urls), "timeout": self.timeout}
        first = urlsplit(urls.split(",")[0].strip())
        if first.username is not None or first.password is not None:
            conf["basic.auth.user.info"] = f"{unquote(first.username or '')}:" + unquote(
                first.password or ""
            )
        if self.basic_auth_user_info is not None:
            conf["basic.auth.user.info"] = self.basic_auth_user_info.reveal()
        if self.bearer_auth_token is not None:
            conf["bearer.auth.credentials.source"] = "STATIC_TOKEN"
            conf["bearer.auth.token"] = self.bearer_auth_token.reveal()
            # Confluent's client always sends `target-sr-cluster`; only Confluent Cloud reads it
            conf["bearer.auth.logical.cluster"] = self.bearer_auth_logical_cluster or ""
        optional = {
            "ssl.ca.location": self.ssl_ca_location,
            "ssl.certificate.location": self.ssl_certificate_location,
            "ssl.key.location": self.ssl_key_location,
            "ssl.key.password": self.ssl_key_password and self.ssl_key_password.reveal(),
        }
        conf.update({k: v for k, v in optional.items() if v is not None})
        return conf


def mask_url(url: str) -> str:
    """`https://user:pass@host/x` -> `https://user:***@host/x`, in each of comma-separated URLs.

    Text-based, not parsed: a password with characters a URL parser splits on (`,`, `/`, `#`)
    is still masked up to the `@`.
    """
    return _USERINFO.sub(_mask_match, url)


_USERINFO = re.compile(r"://(?P<user>[^/@:]*)(?P<password>:(?:(?!://)[^@])*)?@")


def _mask_match(match: re.Match[str]) -> str:
    if match["password"] is None:
        return "://***@"  # a lone user-info part may be a token
    return f"://{match['user']}:***@"


def _masked_user_info(value: Secret | None) -> str | None:
    if value is None:
        return None
    user, sep, _ = value.reveal().partition(":")
    return f"{user}:***" if sep else "***"


def load_registry_settings(
    *,
    url: str | None,
    basic_auth_user_info: str | None = None,
    bearer_auth_token: str | None = None,
    bearer_auth_logical_cluster: str | None = None,
    ssl_ca_location: str | None = None,
    ssl_certificate_location: str | None = None,
    ssl_key_location: str | None = None,
    ssl_key_password: str | None = None,
) -> RegistrySettings | None:
    """None without a URL (no registry); else validated settings. ConfigurationError names the
    first bad variable; its message never holds a secret."""
    given = {
        "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO": basic_auth_user_info,
        "SCHEMA_REGISTRY_BEARER_AUTH_TOKEN": bearer_auth_token,
        "SCHEMA_REGISTRY_SSL_CERTIFICATE_LOCATION": ssl_certificate_location,
        "SCHEMA_REGISTRY_SSL_CA_LOCATION": ssl_ca_location,
    }
    if not url:
        for name, value in given.items():
            if value:
                raise ConfigurationError(f"needs {URL_SETTING} as well", setting=name)
        return None
    with_credentials = False
    for part in url.split(","):
        parts = urlsplit(part.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            shown = f": {part.strip()!r}"
            if "@" in url:
                shown = " (credentials not shown; percent-encode , @ / in them)"
            raise ConfigurationError(f"not an http(s) URL{shown}", setting=URL_SETTING)
        with_credentials |= parts.username is not None
    if basic_auth_user_info and ":" not in basic_auth_user_info:
        raise ConfigurationError(
            "must be <user>:<password>", setting="SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO"
        )
    if basic_auth_user_info and with_credentials:
        raise ConfigurationError(
            f"give credentials here or in {URL_SETTING}, not both",
            setting="SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO",
        )
    if bearer_auth_token and (basic_auth_user_info or with_credentials):
        raise ConfigurationError(
            "give a bearer token or basic-auth credentials, not both",
            setting="SCHEMA_REGISTRY_BEARER_AUTH_TOKEN",
        )
    if (ssl_key_location or ssl_key_password) and not ssl_certificate_location:
        raise ConfigurationError(
            "a client key needs its certificate", setting="SCHEMA_REGISTRY_SSL_CERTIFICATE_LOCATION"
        )
    for name, path in (
        ("SCHEMA_REGISTRY_SSL_CA_LOCATION", ssl_ca_location),
        ("SCHEMA_REGISTRY_SSL_CERTIFICATE_LOCATION", ssl_certificate_location),
        ("SCHEMA_REGISTRY_SSL_KEY_LOCATION", ssl_key_location),
    ):
        if path and not Path(path).exists():
            raise ConfigurationError(f"no such file: {path}", setting=name)
    return RegistrySettings(
        url=Secret(url),
        basic_auth_user_info=Secret(basic_auth_user_info) if basic_auth_user_info else None,
        bearer_auth_token=Secret(bearer_auth_token) if bearer_auth_token else None,
        bearer_auth_logical_cluster=bearer_auth_logical_cluster or None,
        ssl_ca_location=ssl_ca_location or None,
        ssl_certificate_location=ssl_certificate_location or None,
        ssl_key_location=ssl_key_location or None,
        ssl_key_password=Secret(ssl_key_password) if ssl_key_password else None,
    )
