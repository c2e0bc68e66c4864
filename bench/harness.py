"""What the benchmarks share: a local Kafka broker, and the CPU and memory of a process.

The sandbox, topics, members and publishing come from `consumer.tools.demo` (the demo runs the
same pieces); this module holds what only a benchmark needs. Imported by the bench scripts as
`harness` (a script's own folder is on its path).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TICKS = os.sysconf("SC_CLK_TCK")


def start_broker(workdir: Path) -> tuple[Any, str]:
    """A KRaft broker from Apache Kafka's jars (deploy/kafka/local_kafka.py) with its data in
    `workdir`; (the broker, to `stop()`, and its bootstrap address)."""
    spec = importlib.util.spec_from_file_location(
        "local_kafka", ROOT / "deploy" / "kafka" / "local_kafka.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["local_kafka"] = module  # its dataclasses look their module up while defined
    spec.loader.exec_module(module)
    broker = module.LocalBroker(workdir, module.free_port(), module.free_port())
    broker.start()
    return broker, broker.bootstrap


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process (Linux /proc); None when it cannot be read."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def rss_mib(pid: int) -> float:
    """Resident memory of a process in MiB (Linux /proc); 0 when it cannot be read."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0
