"""The text a member writes into each offset commit's metadata. [pure]

Format `fc2:` followed by `key=value` fields joined by `;`, e.g. `fc2:h=1200;d=14.5`:

| key | meaning |
|---|---|
| `h` | dispatch horizon (reconcile.py): [committed, h) may be at Digital River (required) |
| `d` | the partition's demand, requests/s its owner could use now (budget.py; optional) |
| `r` | past the committed offset: settled / unsure / never-dispatched runs (dispatch_log.py) |
| `at` | the commit's wall-clock time (epoch ms) while anything is unsure: a successor acts on no |
|  | listing before it + the client timeout (reconcile.listing_not_before) |

Any other key is kept as read (`CommitMetadata.extra`) so fields added later (by a newer member,
or another concern of the commit) survive being read and written again by this version. The older
`fc1:horizon=N` is still read. Kafka refuses metadata over `offset.metadata.max.bytes` (4096 by
default): everything here stays far below it (`MAX_METADATA_CHARS`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

PREFIX: Final = "fc2:"
LEGACY_PREFIX: Final = "fc1:horizon="
MAX_METADATA_CHARS: Final = 1024
_RESERVED: Final = frozenset({"h", "d", "r", "at"})
_LEGACY_AT: Final = ";at="


@dataclass(frozen=True, slots=True)
class CommitMetadata:
    horizon: int
    demand: float | None = None
    runs: str | None = None  # DispatchLog text, from the committed offset
    extra: Mapping[str, str] = field(default_factory=dict)
    at_ms: int | None = None  # when the commit was written (epoch ms)


def encode(metadata: CommitMetadata) -> str:
    """`fc2:h=...;d=...;<extra>`; raises ValueError for a negative horizon, a reserved or
    malformed extra key, or text longer than MAX_METADATA_CHARS."""
    if metadata.horizon < 0:
        raise ValueError(f"horizon must be >= 0, got {metadata.horizon}")
    fields = [f"h={metadata.horizon}"]
    if metadata.demand is not None:
        fields.append(f"d={_demand_text(metadata.demand)}")
    if metadata.runs is not None:
        if ";" in metadata.runs or "=" in metadata.runs:
            raise ValueError(f"bad runs {metadata.runs!r}")
        fields.append(f"r={metadata.runs}")
    if metadata.at_ms is not None:
        if metadata.at_ms < 0:
            raise ValueError(f"commit time must be >= 0, got {metadata.at_ms}")
        fields.append(f"at={metadata.at_ms}")
    for key, value in metadata.extra.items():
        if key in _RESERVED or not _is_token(key) or ";" in value:
            raise ValueError(f"bad commit metadata field {key!r}={value!r}")
        fields.append(f"{key}={value}")
    text = PREFIX + ";".join(fields)
    if len(text) > MAX_METADATA_CHARS:
        raise ValueError(f"commit metadata of {len(text)} chars (at most {MAX_METADATA_CHARS})")
    return text


def decode(text: str | None) -> CommitMetadata | None:
    """What an earlier commit recorded; None for no, foreign or garbled metadata (no horizon)."""
    if not text:
        return None
    if text.startswith(LEGACY_PREFIX):
        return _legacy(text[len(LEGACY_PREFIX) :])
    if not text.startswith(PREFIX):
        return None
    fields: dict[str, str] = {}
    for part in text[len(PREFIX) :].split(";"):
        key, sep, value = part.partition("=")
        if not sep or not _is_token(key) or key in fields:
            return None
        fields[key] = value
    horizon = _natural(fields.pop("h", ""))
    if horizon is None:
        return None
    demand = _demand(fields.pop("d", None))
    at = fields.pop("at", "")
    at_ms = _natural(at) if at else None
    return CommitMetadata(horizon, demand, fields.pop("r", None), fields, at_ms)


def _legacy(rest: str) -> CommitMetadata | None:
    """`fc1:horizon=N`, optionally followed by `;at=<epoch ms>`."""
    digits, sep, at = rest.partition(_LEGACY_AT)
    horizon = _natural(digits)
    at_ms = _natural(at) if sep else None
    if horizon is None or (sep and at_ms is None):
        return None
    return CommitMetadata(horizon, at_ms=at_ms)


def _demand_text(demand: float) -> str:
    # one decimal: demand moves the budget in whole requests/s, and an unchanged text means
    # no commit is needed just to publish it
    return f"{max(0.0, demand):.1f}"


def _demand(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def _natural(text: str) -> int | None:
    return int(text) if text.isascii() and text.isdigit() else None


def _is_token(key: str) -> bool:
    return bool(key) and key.isascii() and all(c.isalnum() or c == "_" for c in key)
