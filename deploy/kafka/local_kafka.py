#!/usr/bin/env python3
"""A real single-node KRaft Kafka broker on loopback, from Apache Kafka's Maven Central jars.

Used by the tests (session fixture), `make demo` and the benchmarks; users with Docker get the same
from docker-compose.yml. Needs Java 17+ and Maven the first time (the jars are cached afterwards in
$FC_KAFKA_CACHE, default ~/.cache/fulfillment-consumer/kafka-<version>).

    python deploy/kafka/local_kafka.py start --dir /tmp/kafka --port 9092   # fresh data dir; waits
    python deploy/kafka/local_kafka.py stop --dir /tmp/kafka
    python deploy/kafka/local_kafka.py fetch                                 # only resolve the jars
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
KAFKA_VERSION = "4.1.1"
CACHE = Path(
    os.environ.get(
        "FC_KAFKA_CACHE", Path.home() / ".cache" / "fulfillment-consumer" / f"kafka-{KAFKA_VERSION}"
    )
)

SERVER_PROPERTIES = """\
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{controller_port}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs={data_dir}
num.partitions=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
# KIP-848 (`group.protocol=consumer`, on by default since Kafka 4.0: group.coordinator.rebalance.
# protocols=classic,consumer) keeps the session timeout and heartbeat interval on the broker.
# Here they match what the tests give classic members (6 s, 0.5 s) so a killed member's partitions
# move within seconds; production brokers keep 45 s / 5 s or set them per group
# (`kafka-configs --entity-type groups --add-config consumer.session.timeout.ms=...`).
group.consumer.min.session.timeout.ms=3000
group.consumer.session.timeout.ms=6000
group.consumer.min.heartbeat.interval.ms=250
group.consumer.heartbeat.interval.ms=500
log.flush.interval.messages=1000000
"""


class BrokerError(RuntimeError):
    pass


def fetch_jars() -> Path:
    """Resolve the broker's jars into the cache once; later calls return at once."""
    libs = CACHE / "libs"
    marker = CACHE / ".complete"
    if marker.exists():
        return libs
    if shutil.which("mvn") is None:
        raise BrokerError("Maven (mvn) is needed once to fetch Kafka's jars from Maven Central")
    tmp = CACHE.with_name(CACHE.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    cmd = [
        "mvn",
        "-q",
        "-B",
        "-f",
        str(HERE / "pom.xml"),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={tmp / 'libs'}",
        "-DincludeScope=runtime",
    ]
    subprocess.run(cmd, check=True)
    (tmp / ".complete").write_text(KAFKA_VERSION)
    shutil.rmtree(CACHE, ignore_errors=True)
    tmp.rename(CACHE)
    return libs


def _cluster_id() -> str:
    """A base64url UUID, as `kafka-storage random-uuid` makes; never with a leading '-', which
    the storage tool's argument parser would read as an option (as Kafka's own Uuid avoids)."""
    while True:
        found = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not found.startswith("-"):
            return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LocalBroker:
    """One broker process in its own fresh data directory."""

    workdir: Path
    port: int
    controller_port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 90.0) -> float:
        """Format a fresh data dir, start the broker, block until it serves metadata.

        Returns the seconds from launch to ready; raises BrokerError (with the log tail) otherwise.
        """
        libs = fetch_jars()
        java = shutil.which("java")
        if java is None:
            raise BrokerError("Java 17+ is needed to run the local Kafka broker")
        data = self.workdir / "data"
        shutil.rmtree(data, ignore_errors=True)
        data.mkdir(parents=True)
        props = self.workdir / "server.properties"
        props.write_text(
            SERVER_PROPERTIES.format(
                port=self.port, controller_port=self.controller_port, data_dir=data
            )
        )
        cp = f"{libs}/*"
        log4j = f"-Dlog4j2.configurationFile={HERE / 'log4j2.properties'}"
        subprocess.run(
            [
                java,
                log4j,
                "-cp",
                cp,
                "kafka.tools.StorageTool",
                "format",
                "-t",
                _cluster_id(),
                "-c",
                str(props),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        started = time.monotonic()
        with (self.workdir / "broker.log").open("wb") as log:  # the broker keeps its own handle
            self.process = subprocess.Popen(
                [
                    java,
                    "-Xms256m",
                    "-Xmx768m",
                    "-XX:+UseSerialGC",
                    "-XX:TieredStopAtLevel=1",
                    log4j,
                    "-cp",
                    cp,
                    "kafka.Kafka",
                    str(props),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        (self.workdir / "broker.pid").write_text(str(self.process.pid))
        (self.workdir / "bootstrap").write_text(self.bootstrap)
        self._wait_ready(started + timeout)
        return time.monotonic() - started

    def _wait_ready(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise BrokerError(
                    f"broker exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            if _serves_metadata(self.bootstrap) and _serves_groups(self.bootstrap):
                return
            time.sleep(0.2)
        self.stop()
        raise BrokerError(f"broker not ready in time:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        path = self.workdir / "broker.log"
        return (
            "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
            if path.exists()
            else ""
        )

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM (controlled shutdown), then SIGKILL after `timeout`."""
        pid = self.process.pid if self.process else _read_pid(self.workdir)
        if pid is None:
            return
        _terminate(pid, timeout)
        if self.process is not None:
            self.process.wait(timeout=5)
        (self.workdir / "broker.pid").unlink(missing_ok=True)


def _read_pid(workdir: Path) -> int | None:
    path = workdir / "broker.pid"
    return int(path.read_text()) if path.exists() else None


def _terminate(pid: int, timeout: float) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def _serves_metadata(bootstrap: str) -> bool:
    host, port = bootstrap.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=0.5):
            pass
    except OSError:
        return False
    try:
        # the script runs with or without the project's venv; with it, check metadata for real
        from confluent_kafka.admin import AdminClient  # noqa: PLC0415
    except ImportError:
        return True
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0, "logger": _quiet})
    try:
        md = admin.list_topics(timeout=2)
    except Exception:
        return False
    return len(md.brokers) > 0


def _serves_groups(bootstrap: str) -> bool:
    """A fresh broker serves metadata before its group coordinator has loaded its partitions;
    until then commits fail or crawl (a benchmark's baseline would measure that)."""
    try:
        # the script runs with or without the project's venv
        from confluent_kafka import Consumer, KafkaException, TopicPartition  # noqa: PLC0415
    except ImportError:
        return True
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "fc-warm-up", "logger": _quiet, "log_level": 0}
    )
    try:
        consumer.committed([TopicPartition("fc-warm-up", 0)], timeout=2)
    except KafkaException:
        return False
    finally:
        consumer.close()
    return True


class _Quiet:
    def log(self, *args: object, **kwargs: object) -> None:
        pass

    def __getattr__(self, name: str) -> object:
        return lambda *a, **k: None


_quiet = _Quiet()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    start = sub.add_parser("start")
    start.add_argument("--dir", type=Path, required=True)
    start.add_argument("--port", type=int, default=9092)
    start.add_argument("--controller-port", type=int, default=0)
    stop = sub.add_parser("stop")
    stop.add_argument("--dir", type=Path, required=True)
    sub.add_parser("fetch")
    args = parser.parse_args(argv)
    try:
        if args.cmd == "fetch":
            print(fetch_jars())
        elif args.cmd == "start":
            args.dir.mkdir(parents=True, exist_ok=True)
            if (pid := _read_pid(args.dir)) is not None:
                _terminate(pid, 30)
            broker = LocalBroker(args.dir, args.port, args.controller_port or free_port())
            took = broker.start()
            print(
                f"kafka {KAFKA_VERSION} ready at {broker.bootstrap} in {took:.1f}s "
                f"(logs: {args.dir / 'broker.log'})"
            )
        else:
            LocalBroker(args.dir, 0, 0).stop()
            print("kafka stopped")
    except BrokerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
