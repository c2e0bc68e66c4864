"""docs/architecture.md, the README's layout, the import contract and the tree say the same thing.

Every dotted name the architecture doc writes in backticks under a folder of the package
(`core.lanes.PartitionLanes`, `member.engine.Engine.run`, `consumer.cli.main`) must exist, every
`consumer/...` path it names must be a file, every folder of the package must be a layer of the
import contract and be described in both documents.
"""

from __future__ import annotations

import importlib
import re
import tomllib
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "consumer"
DOC = ROOT / "docs" / "architecture.md"
README = ROOT / "README.md"

_TOP = sorted(
    [p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()]
    + [p.stem for p in PACKAGE.glob("*.py") if p.stem not in {"__init__", "__main__"}]
)
_NAME = r"(?:" + "|".join(_TOP) + r")(?:\.[A-Za-z_][A-Za-z0-9_]*)+"
_DOTTED = re.compile(r"`((?:consumer\.)?" + _NAME + r")(?:\(\))?`")
_PATH = re.compile(r"`(consumer/[A-Za-z0-9_/]+(?:\.py)?)`")


def _folders() -> list[str]:
    return sorted(
        p.name
        for p in PACKAGE.iterdir()
        if p.is_dir() and (p / "__init__.py").exists() and p.name != "schemas"
    )


def _resolve(dotted: str) -> object:
    """The object `dotted` names: the longest importable module prefix, then attributes."""
    parts = dotted.removeprefix("consumer.").split(".")
    module: ModuleType | None = None
    rest: list[str] = []
    for cut in range(len(parts), 0, -1):
        try:
            module = importlib.import_module("consumer." + ".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        rest = parts[cut:]
        break
    assert module is not None, f"`{dotted}`: no module of that name"
    target: object = module
    for name in rest:
        fields = getattr(target, "__dataclass_fields__", {})
        if name in fields and not hasattr(target, name):
            return fields[name]  # a dataclass field without a class-level default
        owner = getattr(target, "__name__", target)
        assert hasattr(target, name), f"`{dotted}`: {owner} has no {name}"
        target = getattr(target, name)
    return target


_BARE = re.compile(r"(?<![\w.`])(" + _NAME + r")")


def _journey() -> str:
    """The indented block under "One record's journey": names there are bare, not in backticks."""
    section = DOC.read_text().split("## One record's journey", 1)[1].split("\n## ", 1)[0]
    return "\n".join(line for line in section.splitlines() if line.startswith("    "))


def _doc_names() -> list[str]:
    names = set(_DOTTED.findall(DOC.read_text())) | set(_BARE.findall(_journey()))
    return sorted(n for n in names if not n.endswith(".py"))


def test_the_journey_names_each_step_in_code() -> None:
    assert len(set(_BARE.findall(_journey()))) >= 12


def test_the_architecture_doc_names_code_at_all() -> None:
    # a doc whose references all fell out of the pattern would pass the next test vacuously
    assert len(_doc_names()) >= 30


@pytest.mark.parametrize("dotted", _doc_names())
def test_every_name_the_architecture_doc_gives_exists(dotted: str) -> None:
    _resolve(dotted)


def test_every_path_the_architecture_doc_gives_exists() -> None:
    missing = [p for p in set(_PATH.findall(DOC.read_text())) if not (ROOT / p).exists()]
    assert missing == []


def _contract_layers() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    contracts = config["tool"]["importlinter"]["contracts"]
    (layers,) = [c for c in contracts if c["type"] == "layers" and c["containers"] == ["consumer"]]
    return [name.strip() for layer in layers["layers"] for name in layer.split("|")]


def test_every_folder_of_the_package_is_a_layer_of_the_import_contract() -> None:
    layered = set(_contract_layers())
    assert set(_folders()) <= layered, sorted(set(_folders()) - layered)
    assert layered <= {*_folders(), "cli"}, sorted(layered - {*_folders(), "cli"})


def test_no_module_sits_beside_the_folders_but_the_entry_points() -> None:
    loose = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert loose == ["__init__.py", "__main__.py", "cli.py"]


@pytest.mark.parametrize("folder", _folders())
def test_every_folder_is_described_in_the_architecture_doc_and_the_readme(folder: str) -> None:
    assert f"`consumer/{folder}/`" in DOC.read_text()
    layout = README.read_text().split("## Layout", 1)[1].split("\n## ", 1)[0]
    assert re.search(rf"^\s+{folder}/", layout, re.M), f"README layout lacks {folder}/"


@pytest.mark.parametrize(
    "module",
    sorted(
        str(p.relative_to(ROOT))
        for p in PACKAGE.rglob("*.py")
        if p.name != "__init__.py" and "sandbox" not in p.parts and "schemas" not in p.parts
    ),
)
def test_every_module_of_the_service_and_tools_is_in_the_architecture_doc(module: str) -> None:
    name = Path(module).relative_to("consumer").with_suffix("")
    assert f"`{name.as_posix()}.py`" in DOC.read_text() or f"`{module}`" in DOC.read_text(), (
        f"docs/architecture.md does not describe {module}"
    )
