"""The schemas ship inside the package, and the explicit package list misses no subpackage."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from consumer.codec.schema_store import default_schema_files

ROOT = Path(__file__).resolve().parents[2]


def _setuptools() -> Any:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_schema_file_in_the_repository_is_loaded_from_the_package() -> None:
    on_disk = sorted(p.name for p in (ROOT / "schemas").glob("*.avsc"))

    assert on_disk
    assert [entry.name for entry in default_schema_files()] == on_disk


def test_the_schemas_folder_is_mapped_as_consumer_schemas_with_its_avsc_files() -> None:
    setuptools = _setuptools()

    assert setuptools["package-dir"] == {"consumer.schemas": "schemas"}
    assert "*.avsc" in setuptools["package-data"]["consumer.schemas"]


def test_every_subpackage_of_consumer_is_listed_for_packaging() -> None:
    # packages.find cannot be combined with the schemas mapping, so the list is explicit: a new
    # subpackage must be added to it or the wheel ships without it
    subpackages = {
        ".".join(path.relative_to(ROOT).parts)
        for path in (ROOT / "consumer").rglob("*")
        if path.is_dir() and path.name != "__pycache__" and any(path.glob("*.py"))
    }

    assert {"consumer", *subpackages} <= set(_setuptools()["packages"])
