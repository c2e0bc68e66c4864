"""What `replay` reads from an operator, in Kafka's `kafka-consumer-groups` formats. [pure]

`--by-duration` takes an ISO 8601 duration as Java's `Duration.parse` does (`PT1H`, `P1DT12H`,
`PT0.5S`); `--topic orders:0,3` names partitions; `--export` and `--from-file` speak Kafka's CSV
(`topic,partition,offset` per line, or `group,topic,partition,offset` as Kafka writes it for
several groups). Bad input raises ValueError with a message fit for the operator.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import timedelta

_DURATION = re.compile(
    r"P(?:(?P<days>\d+)D)?(?:T(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?"
    r"(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?",
    flags=re.IGNORECASE,
)


def parse_duration(text: str) -> timedelta:
    """`PT1H` -> 1 hour. Days, hours, minutes and seconds, as Java's Duration; not negative."""
    found = _DURATION.fullmatch(text.strip())
    if found is None or not any(found.groupdict().values()) or text.strip().upper().endswith("T"):
        raise ValueError(f"not an ISO 8601 duration like PT1H or P1DT12H: {text!r}")
    parts = {name: float(value) for name, value in found.groupdict().items() if value}
    return timedelta(**parts)


def split_topic(text: str) -> tuple[str, list[int] | None]:
    """`orders:0,3` -> ("orders", [0, 3]); `orders` -> ("orders", None)."""
    topic, colon, listed = text.partition(":")
    if not colon:
        return topic, None
    return topic, parse_partitions(listed)


def parse_partitions(text: str) -> list[int]:
    """`0,3,5` -> [0, 3, 5] (sorted, once each)."""
    try:
        found = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise ValueError(f"expected partition numbers like 0,3,5, got {text!r}") from None
    if not found or found[0] < 0:
        raise ValueError(f"expected partition numbers like 0,3,5, got {text!r}")
    return found


def offsets_csv(topic: str, offsets: Iterable[tuple[int, int]]) -> str:
    """Kafka's reset-offsets CSV: one `topic,partition,offset` line per partition."""
    return "".join(f"{topic},{partition},{offset}\n" for partition, offset in offsets)


def read_offsets_csv(text: str, *, topic: str, group: str) -> Mapping[int, int]:
    """Partition -> offset from Kafka's CSV for `topic` (and `group`, in the 4-column form)."""
    found: dict[int, int] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        fields = [f.strip() for f in line.split(",")]
        if len(fields) == 4:
            if fields[0] != group:
                raise ValueError(f"line {number}: group {fields[0]!r}, not {group!r}")
            fields = fields[1:]
        if len(fields) != 3:
            raise ValueError(f"line {number}: expected topic,partition,offset, got {line!r}")
        if fields[0] != topic:
            raise ValueError(f"line {number}: topic {fields[0]!r}, not {topic!r}")
        try:
            partition, offset = int(fields[1]), int(fields[2])
        except ValueError:
            raise ValueError(f"line {number}: partition and offset must be numbers") from None
        if partition < 0 or offset < 0:
            raise ValueError(f"line {number}: partition and offset must not be negative")
        if partition in found:
            raise ValueError(f"line {number}: partition {partition} named twice")
        found[partition] = offset
    if not found:
        raise ValueError("no topic,partition,offset lines")
    return found
