"""Schema Registry settings: bad ones fail at start naming the variable; secrets never print."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumer.config.registry import load_registry_settings, mask_url
from consumer.core.errors import ConfigurationError

SECRET = "Distinctive-Registry-Secret-7q"


def refused(**given_settings: Any) -> ConfigurationError:
    with pytest.raises(ConfigurationError) as caught:
        load_registry_settings(**given_settings)
    assert SECRET not in str(caught.value)
    return caught.value


def test_no_url_means_no_registry() -> None:
    assert load_registry_settings(url=None) is None
    assert load_registry_settings(url="") is None


@pytest.mark.parametrize(
    ("settings", "variable"),
    [
        ({"url": "registry:8081"}, "SCHEMA_REGISTRY_URL"),
        ({"url": "ftp://registry"}, "SCHEMA_REGISTRY_URL"),
        ({"url": "https://a,registry:8081"}, "SCHEMA_REGISTRY_URL"),
        ({"url": f"mock://u:{SECRET}@x"}, "SCHEMA_REGISTRY_URL"),
        ({"url": None, "bearer_auth_token": SECRET}, "SCHEMA_REGISTRY_BEARER_AUTH_TOKEN"),
        (
            {"url": "https://r", "basic_auth_user_info": SECRET},
            "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO",
        ),
        (
            {"url": f"https://u:{SECRET}@r", "basic_auth_user_info": f"u:{SECRET}"},
            "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO",
        ),
        (
            {
                "url": "https://r",
                "basic_auth_user_info": f"u:{SECRET}",
                "bearer_auth_token": SECRET,
            },
            "SCHEMA_REGISTRY_BEARER_AUTH_TOKEN",
        ),
        (
            {"url": "https://r", "ssl_key_password": SECRET},
            "SCHEMA_REGISTRY_SSL_CERTIFICATE_LOCATION",
        ),
        (
            {"url": "https://r", "ssl_ca_location": "/nonexistent/ca.pem"},
            "SCHEMA_REGISTRY_SSL_CA_LOCATION",
        ),
    ],
    ids=lambda v: ",".join(v) if isinstance(v, dict) else str(v),
)
def test_a_bad_registry_setting_fails_naming_its_variable_without_the_secret(
    settings: dict[str, Any], variable: str
) -> None:
    assert refused(**settings).setting == variable


def test_confluent_client_keys_are_built_from_the_settings(tmp_path: Path) -> None:
    cert = tmp_path / "client.pem"
    cert.write_text("x")
    settings = load_registry_settings(
        url="https://r",
        bearer_auth_token=SECRET,
        ssl_certificate_location=str(cert),
        ssl_key_location=str(cert),
        ssl_key_password=SECRET,
    )
    assert settings is not None

    conf = settings.client_config()

    assert conf["bearer.auth.credentials.source"] == "STATIC_TOKEN"
    assert conf["bearer.auth.token"] == SECRET
    assert conf["ssl.certificate.location"] == conf["ssl.key.location"] == str(cert)
    assert conf["ssl.key.password"] == SECRET
    assert SECRET not in repr(settings)
    assert SECRET not in str(settings.masked())


_userinfo = st.text(
    alphabet=st.characters(codec="ascii", exclude_characters="@/:#?[]%\\ \x7f"), min_size=1
).filter(str.isprintable)


@given(user=_userinfo, password=_userinfo.filter(lambda p: len(p) > 3))
def test_a_password_in_the_url_never_survives_masking(user: str, password: str) -> None:
    url = f"https://{user}:{password}@registry.example:8081/ctx"

    masked = mask_url(url)

    assert masked == f"https://{user}:***@registry.example:8081/ctx"


@given(hosts=st.lists(st.sampled_from(["a.example", "b.example:8081"]), min_size=1, max_size=3))
def test_urls_without_credentials_print_unchanged(hosts: list[str]) -> None:
    url = ",".join(f"https://{h}" for h in hosts)

    assert mask_url(url) == url


def test_url_credentials_reach_the_client_as_basic_auth_never_inside_its_urls() -> None:
    settings = load_registry_settings(url=f"https://fc:{SECRET}@a.example,https://b.example:8081")
    assert settings is not None

    conf = settings.client_config()

    assert conf["url"] == "https://a.example,https://b.example:8081"
    assert conf["basic.auth.user.info"] == f"fc:{SECRET}"
