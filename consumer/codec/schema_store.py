"""Every released version of our Avro schemas, found by fingerprint. [pure]

`schemas/` ships inside the package as `consumer.schemas`, one `<Name>.v<N>.avsc` file per released
version; none is ever removed, so an event written with any of them still decodes.

Each version has two CRC-64-AVRO (Rabin) fingerprints:

- "spec": of the Parsing Canonical Form as the Avro specification defines it (only `name`, `type`,
  `fields`, `symbols`, `items`, `values`, `size` kept, primitives as plain strings). Java's
  `SchemaNormalization` and fastavro compute this one.
- "avro-1.12": what Python's `avro` library (1.11 and 1.12) computes. It drops `logicalType` like
  the spec, but a primitive written as an object with other attributes keeps its object form, so
  `{"type": "long", "logicalType": "timestamp-millis"}` canonicalises to `{"type":"long"}` instead
  of `"long"` and the fingerprint differs. Producers using that library are common enough that the
  consumer accepts it and says so (`FingerprintKind`).

Canonical forms are computed here, not by fastavro, because fastavro cannot produce the variant;
the tests check the "spec" form against fastavro and the specification's vectors, and the variant
against the `avro` library itself.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib.resources import files
from importlib.resources.abc import Traversable
from typing import Any, Literal, TypeAlias

from consumer.core.errors import ConfigurationError
from consumer.core.events import EventKind

FingerprintKind: TypeAlias = Literal["spec", "avro-1.12"]

NAMESPACE = "fulfillment.events"
SCHEMA_KINDS: Mapping[str, EventKind] = {
    f"{NAMESPACE}.ShipmentEvent": "shipment",
    f"{NAMESPACE}.CancellationEvent": "cancellation",
}

_FILE_NAME = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)\.v(?P<version>[1-9][0-9]*)\.avsc")
_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
# Attributes the `avro` library does not count as a primitive's own properties (its
# SCHEMA_RESERVED_PROPS); any other one (logicalType, connect.name, ...) triggers the variant.
_RESERVED = frozenset(
    {"type", "name", "namespace", "fields", "items", "size", "symbols", "values", "doc"}
)

_EMPTY64 = 0xC15D213AA4D7A795


def _fingerprint_table() -> tuple[int, ...]:
    table = []
    for index in range(256):
        fp = index
        for _ in range(8):
            fp = (fp >> 1) ^ (_EMPTY64 & -(fp & 1))
        table.append(fp)
    return tuple(table)


_TABLE = _fingerprint_table()


def rabin_fingerprint(canonical_form: str) -> bytes:
    """CRC-64-AVRO of the UTF-8 text, as the 8 little-endian bytes single-object encoding writes."""
    fp = _EMPTY64
    for byte in canonical_form.encode("utf-8"):
        fp = (fp >> 8) ^ _TABLE[(fp ^ byte) & 0xFF]
    return fp.to_bytes(8, "little")


def canonical_form(definition: object, *, kind: FingerprintKind = "spec") -> str:
    """The Parsing Canonical Form of an Avro schema (parsed JSON), or avro-1.12's variant of it.

    Raises ValueError for a schema this module cannot canonicalise (not valid Avro).
    """
    try:
        tree = _canonical(definition, "", variant=kind == "avro-1.12")
    except (KeyError, TypeError) as exc:
        raise ValueError(f"not an Avro schema: missing or mistyped {exc}") from exc
    return json.dumps(tree, separators=(",", ":"), ensure_ascii=False)


def full_name(definition: Mapping[str, Any]) -> str:
    """`namespace.name` of a named schema (a dotted `name` is already full)."""
    return _qualify(str(definition.get("name", "")), str(definition.get("namespace") or ""))


def _qualify(name: str, namespace: str) -> str:
    return name if "." in name or not namespace else f"{namespace}.{name}"


def _canonical(schema: object, namespace: str, *, variant: bool) -> object:
    if isinstance(schema, list):
        return [_canonical(branch, namespace, variant=variant) for branch in schema]
    if isinstance(schema, str):
        return schema if schema in _PRIMITIVES else _qualify(schema, namespace)
    if not isinstance(schema, Mapping):
        raise ValueError(f"not an Avro schema: {schema!r}")
    kind = schema.get("type")
    if kind in _PRIMITIVES:
        return {"type": kind} if variant and set(schema) - _RESERVED else kind
    if kind in ("record", "enum", "fixed"):
        return _canonical_named(schema, namespace, variant=variant)
    if kind in ("array", "map"):
        child = "items" if kind == "array" else "values"
        return {"type": kind, child: _canonical(schema[child], namespace, variant=variant)}
    if not isinstance(kind, (str, list, Mapping)):
        raise ValueError(f"not an Avro schema: {schema!r}")
    return _canonical(kind, namespace, variant=variant)  # {"type": <a name or a nested schema>}


def _canonical_named(schema: Mapping[str, Any], namespace: str, *, variant: bool) -> object:
    kind = schema["type"]
    own = schema.get("namespace", namespace)
    if variant and not own:
        own = namespace  # avro treats `"namespace": ""` as absent; the spec as the null namespace
    name = _qualify(str(schema["name"]), str(own or ""))
    out: dict[str, object] = {"name": name, "type": kind}
    if kind == "record":
        inner = name.rpartition(".")[0]  # nested names default to the record's namespace
        out["fields"] = [
            {"name": f["name"], "type": _canonical(f["type"], inner, variant=variant)}
            for f in schema["fields"]
        ]
    elif kind == "enum":
        out["symbols"] = list(schema["symbols"])
    else:
        out["size"] = int(schema["size"])
    return out


@dataclass(frozen=True, slots=True)
class SchemaVersion:
    """One released schema file: `ShipmentEvent.v1.avsc` is fulfillment.events.ShipmentEvent v1."""

    full_name: str
    kind: EventKind
    version: int
    fingerprint: bytes  # spec Parsing Canonical Form, little-endian as on the wire
    variant_fingerprint: bytes  # avro-1.12's form; may equal `fingerprint`
    definition: Mapping[str, Any] = field(compare=False, repr=False)

    @property
    def label(self) -> str:
        return f"{self.full_name.rpartition('.')[2]}.v{self.version}"

    @classmethod
    def from_text(cls, file_name: str, text: str) -> SchemaVersion:
        """Parse one `.avsc` file; ConfigurationError if its name, content or record name is off."""
        match = _FILE_NAME.fullmatch(file_name)
        if match is None:
            raise ConfigurationError(f"{file_name}: not <Name>.v<N>.avsc", setting="schemas")
        try:
            definition = json.loads(text)
            name = full_name(definition)
            forms = (canonical_form(definition), canonical_form(definition, kind="avro-1.12"))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            reason = f"{file_name}: not an Avro schema: {exc}"
            raise ConfigurationError(reason, setting="schemas") from exc
        kind = SCHEMA_KINDS.get(name)
        expected = f"{NAMESPACE}.{match['name']}"
        if kind is None or definition.get("type") != "record" or name != expected:
            raise ConfigurationError(f"{file_name}: holds {name!r}, not ours", setting="schemas")
        return cls(
            full_name=name,
            kind=kind,
            version=int(match["version"]),
            fingerprint=rabin_fingerprint(forms[0]),
            variant_fingerprint=rabin_fingerprint(forms[1]),
            definition=definition,
        )


def default_schema_files() -> list[Traversable]:
    """The `.avsc` files shipped in the package (`schemas/` in the repository)."""
    return sorted(
        (entry for entry in files("consumer.schemas").iterdir() if entry.name.endswith(".avsc")),
        key=lambda entry: entry.name,
    )


class SchemaStore:
    """Released schema versions by fingerprint; immutable after construction."""

    def __init__(self, versions: Iterable[SchemaVersion]) -> None:
        """Raise ConfigurationError if a (name, version) repeats or an event kind has no schema."""
        self.versions = tuple(sorted(versions, key=lambda v: (v.full_name, v.version)))
        self._latest: dict[EventKind, SchemaVersion] = {}
        self._by_fingerprint: dict[bytes, tuple[SchemaVersion, FingerprintKind]] = {}
        if len({(v.full_name, v.version) for v in self.versions}) != len(self.versions):
            raise ConfigurationError("a schema version appears twice", setting="schemas")
        for version in self.versions:
            self._latest[version.kind] = version  # sorted: the last one wins
            # a version whose canonical form repeats an earlier one resolves to the earlier one
            self._by_fingerprint.setdefault(version.fingerprint, (version, "spec"))
        for version in self.versions:
            # the spec fingerprint wins should the variant of one ever equal the spec of another
            self._by_fingerprint.setdefault(version.variant_fingerprint, (version, "avro-1.12"))
        missing = set(SCHEMA_KINDS.values()) - set(self._latest)
        if missing:
            raise ConfigurationError(f"no schema for {sorted(missing)}", setting="schemas")

    @classmethod
    def load_default(cls) -> SchemaStore:
        """Every version shipped in the package."""
        return cls.from_files(default_schema_files())

    @classmethod
    def from_files(cls, paths: Iterable[Traversable]) -> SchemaStore:
        """Versions from the given `.avsc` files (a `pathlib.Path` is a Traversable)."""
        return cls(SchemaVersion.from_text(p.name, p.read_text(encoding="utf-8")) for p in paths)

    def by_fingerprint(self, fingerprint: bytes) -> tuple[SchemaVersion, FingerprintKind] | None:
        """The version whose spec or avro-1.12 fingerprint this is, and which one matched."""
        return self._by_fingerprint.get(fingerprint)

    def latest(self, kind: EventKind) -> SchemaVersion:
        """The newest version for an event kind: the reader schema, and what encoders write."""
        return self._latest[kind]

    def matching(self, definition: Mapping[str, Any]) -> SchemaVersion | None:
        """Our version with the same Parsing Canonical Form as `definition`, if any."""
        try:
            fingerprint = rabin_fingerprint(canonical_form(definition))
        except (ValueError, KeyError, TypeError):
            return None
        found = self._by_fingerprint.get(fingerprint)
        return found[0] if found is not None and found[1] == "spec" else None
