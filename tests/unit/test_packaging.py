"""The package's metadata: an SPDX license with its text, and no dependency nothing uses."""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())

# distribution -> the module our code imports
IMPORT_NAME = {
    "confluent-kafka": "confluent_kafka",
    "prometheus-client": "prometheus_client",
}
# used without an import statement of ours, each with the reason
INDIRECT = {
    "sniffio": "httpcore imports it on every request",
    "httptools": "sandbox/server.py asks uvicorn for http='httptools'",
    "uvloop": "uvicorn's loop='auto' takes it when installed",
}


def _name(requirement: str) -> str:
    found = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
    assert found, requirement
    return found.group(0).lower()


def _imported_anywhere(module: str, folder: Path) -> bool:
    pattern = re.compile(rf"^\s*(import|from)\s+{re.escape(module)}\b", re.MULTILINE)
    return any(pattern.search(p.read_text()) for p in folder.rglob("*.py"))


def test_the_license_is_an_spdx_expression_with_the_apache_text_beside_it() -> None:
    assert PYPROJECT["project"]["license"] == "Apache-2.0"
    assert PYPROJECT["project"]["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text
    assert "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text


def test_the_installed_metadata_carries_the_license_expression() -> None:
    assert metadata("fulfillment-consumer")["License-Expression"] == "Apache-2.0"


RUNTIME = [
    requirement
    for requirement in (
        *PYPROJECT["project"]["dependencies"],
        *PYPROJECT["project"]["optional-dependencies"]["sandbox"],
    )
    if _name(requirement) not in INDIRECT
]


@pytest.mark.parametrize("requirement", RUNTIME, ids=_name)
def test_every_runtime_dependency_is_imported_by_the_package(requirement: str) -> None:
    name = _name(requirement)
    module = IMPORT_NAME.get(name, name.replace("-", "_"))
    assert _imported_anywhere(module, ROOT / "consumer"), f"{name} is never imported"


def test_test_tools_are_a_dependency_group_not_an_extra() -> None:
    assert "dev" not in PYPROJECT["project"]["optional-dependencies"]
    tools = {_name(r) for r in PYPROJECT["dependency-groups"]["dev"]}
    assert {"pytest", "hypothesis", "mypy", "ruff", "import-linter"} <= tools
