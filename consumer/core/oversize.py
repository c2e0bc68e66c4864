"""A record too large for a side topic: what to write instead. [pure]

A dead letter (or parked record) is a copy of the source record plus our headers. The source
topic may accept records its side topics refuse (`message.max.bytes`/`max.message.bytes` differ
per topic and per producer): the write then fails at once, every time. Instead of retrying
forever, a smaller copy is written: first the value (and key) truncated, original headers kept
only if they are small, plus headers naming the original size; if even that is refused, a bare
copy with only our headers. Our headers keep naming the source topic, partition and offset, so
the full record can be read from the source topic while it is retained.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

Headers = tuple[tuple[str, bytes], ...]

TRUNCATED_VALUE_BYTES: Final = 16 * 1024
TRUNCATED_KEY_BYTES: Final = 1024
KEPT_HEADER_BYTES: Final = 8 * 1024  # original headers kept when together no larger than this
OUR_PREFIX: Final = "fc."
MAX_LEVEL: Final = 2


@dataclass(frozen=True, slots=True)
class SideCopy:
    key: bytes | None
    value: bytes | None
    headers: Headers


def _size(headers: Headers) -> int:
    return sum(len(k.encode("utf-8")) + len(v) for k, v in headers)


def shrink(key: bytes | None, value: bytes | None, headers: Headers, level: int) -> SideCopy:
    """The copy to write at `level`: 0 as is, 1 truncated, 2 (and above) bare.

    `headers` are the full side-topic headers (the originals plus ours, ours start with `fc.`).
    From level 1 on the copy says what was cut: `fc.truncated.value_size` and
    `fc.truncated.key_size` (the original sizes), `fc.truncated.headers_size` (the original
    headers' size) and `fc.truncated.kept` (value bytes kept).
    """
    if level <= 0:
        return SideCopy(key, value, headers)
    ours = tuple(h for h in headers if h[0].startswith(OUR_PREFIX))
    originals = tuple(h for h in headers if not h[0].startswith(OUR_PREFIX))
    bare = level >= MAX_LEVEL
    kept_value = None if value is None or bare else value[:TRUNCATED_VALUE_BYTES]
    kept_key = None if key is None else key[:TRUNCATED_KEY_BYTES]
    kept_headers = originals if not bare and _size(originals) <= KEPT_HEADER_BYTES else ()
    about: Headers = (
        ("fc.truncated.value_size", str(len(value or b"")).encode()),
        ("fc.truncated.key_size", str(len(key or b"")).encode()),
        ("fc.truncated.headers_size", str(_size(originals)).encode()),
        ("fc.truncated.kept", str(len(kept_value or b"")).encode()),
    )
    return SideCopy(kept_key, kept_value, kept_headers + ours + about)
