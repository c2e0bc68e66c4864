"""docker-compose.yml and deploy/Dockerfile keep the deployment contract.

The compose file is checked as docker-compose itself resolves it (`docker-compose config`: YAML
anchors merged, schema validated, defaults filled), so a file that only looks right fails here.
CI installs the binary with `apt-get install -y docker-compose` (1.29); no Docker engine is needed.
The Dockerfile is checked as text: building it needs an engine, but its contract (non-root,
health check, entrypoint) is visible without one.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import pytest

# PyYAML reaches the dev venv through uvicorn[standard] (the sandbox extra); its stubs
# (types-PyYAML) are not installed, and `unused-ignore` keeps this line valid once they are.
import yaml  # type: ignore[import-untyped, unused-ignore]

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
PRODUCT_MD = ROOT.parent / "shared" / "PRODUCT.md"

# PRODUCT.md, "Interfaces": the environment names deployments rely on.
CONTRACT_ENV = frozenset(
    {
        "KAFKA_BOOTSTRAP_SERVERS",
        "FULFILLMENT_TOPIC",
        "CONSUMER_GROUP",
        "DLQ_TOPIC",
        "PARKING_TOPIC",
        "DR_API_URL",
        "DR_API_KEY",
        "DR_API_KEY_FILE",
        "DR_RATE_LIMIT",
        "SCHEMA_REGISTRY_URL",
    }
)
# Names outside the table that the compose file may use, each for a stated reason.
DOCUMENTED_EXTRAS = {
    "HEALTH_PORT": "port of /healthz, /readyz and /metrics; the image's HEALTHCHECK reads it",
    "DR_ALLOW_INSECURE_HTTP": "lets the compose sandbox (http://sandbox:8080) be called over http",
}
# Any other KAFKA_* name is passed to librdkafka (PRODUCT.md), so it is part of the contract too.
LIBRDKAFKA_PREFIX = "KAFKA_"

MAIN_TOPIC = "warehouse.fulfillment-events"


# ---------------------------------------------------------------- docker-compose config


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """The compose file as docker-compose resolves it."""
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip("docker-compose not found; CI installs it: apt-get install -y docker-compose")
    result = subprocess.run(
        [binary, "-f", str(COMPOSE_FILE), "config"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"docker-compose config rejected the file:\n{result.stderr}"
    resolved = yaml.safe_load(result.stdout)
    assert isinstance(resolved, dict), f"unexpected `config` output:\n{result.stdout[:500]}"
    return cast(dict[str, Any], resolved)


def service(compose: dict[str, Any], name: str) -> dict[str, Any]:
    services = cast(dict[str, Any], compose["services"])
    assert name in services, f"no `{name}` service; services are {sorted(services)}"
    return cast(dict[str, Any], services[name])


def environment(svc: dict[str, Any]) -> dict[str, str]:
    # `config` normalises a list-form environment to a mapping; values may come back as ints.
    env = svc.get("environment") or {}
    assert isinstance(env, dict)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def command(svc: dict[str, Any]) -> list[str]:
    cmd = svc.get("command")
    assert isinstance(cmd, list), f"command should be an exec-form list, got {cmd!r}"
    return [str(part) for part in cmd]


def is_loopback(host: str) -> bool:
    return host == "localhost" or host.startswith("127.") or host == "::1"


def test_the_compose_file_validates_with_docker_compose(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) >= {"kafka", "topics", "sandbox", "consumer", "simulator"}


def test_the_consumer_is_configured_only_through_contract_environment_names(
    compose: dict[str, Any],
) -> None:
    names = set(environment(service(compose, "consumer")))
    unknown = {
        n
        for n in names
        if n not in CONTRACT_ENV
        and n not in DOCUMENTED_EXTRAS
        and not n.startswith(LIBRDKAFKA_PREFIX)
    }
    assert not unknown, f"consumer env names outside PRODUCT.md's contract: {sorted(unknown)}"
    required = {"KAFKA_BOOTSTRAP_SERVERS", "FULFILLMENT_TOPIC", "CONSUMER_GROUP", "DR_API_URL"}
    assert required <= names, f"missing: {sorted(required - names)}"
    assert names & {"DR_API_KEY", "DR_API_KEY_FILE"}, (
        "the consumer needs DR_API_KEY or DR_API_KEY_FILE"
    )


def test_the_consumer_group_runs_several_members(compose: dict[str, Any]) -> None:
    consumer = service(compose, "consumer")
    replicas = (consumer.get("deploy") or {}).get("replicas", consumer.get("scale", 1))
    assert int(replicas) >= 2
    # several replicas of one service cannot share a container name or a published host port
    assert "container_name" not in consumer
    assert not consumer.get("ports"), "published ports collide between consumer replicas"


def test_the_consumer_reaches_kafka_and_the_sandbox_by_service_name(
    compose: dict[str, Any],
) -> None:
    env = environment(service(compose, "consumer"))
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
    assert env["DR_API_URL"] == "http://sandbox:8080"
    assert env.get("FULFILLMENT_TOPIC", MAIN_TOPIC) == MAIN_TOPIC


def test_plain_http_to_digital_river_is_explicitly_allowed_only_for_the_sandbox(
    compose: dict[str, Any],
) -> None:
    env = environment(service(compose, "consumer"))
    url = urlsplit(env["DR_API_URL"])
    # PRODUCT.md refuses http:// to a non-loopback host unless told; the opt-in must point at the
    # compose sandbox and nothing else.
    if url.scheme == "http" and not is_loopback(url.hostname or ""):
        assert env.get("DR_ALLOW_INSECURE_HTTP") == "true"
        assert url.hostname == "sandbox"
    else:
        assert "DR_ALLOW_INSECURE_HTTP" not in env


def test_the_committed_key_is_a_sandbox_test_key(compose: dict[str, Any]) -> None:
    env = environment(service(compose, "consumer"))
    # a live key (sk_live_...) must never sit in a committed file
    assert env.get("DR_API_KEY", "sk_test_").startswith("sk_test_")


def test_kafka_is_the_official_image_pinned_to_a_4x_release(compose: dict[str, Any]) -> None:
    for name in ("kafka", "topics"):
        image = service(compose, name)["image"]
        assert re.fullmatch(r"apache/kafka:4\.\d+\.\d+", image), f"{name}: {image}"
    assert service(compose, "kafka")["image"] == service(compose, "topics")["image"]


def test_kafka_advertises_itself_to_containers_and_to_the_host(compose: dict[str, Any]) -> None:
    kafka = service(compose, "kafka")
    env = environment(kafka)
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    advertised = dict(
        entry.split("://", 1) for entry in env["KAFKA_ADVERTISED_LISTENERS"].split(",")
    )
    listeners = dict(entry.split("://", 1) for entry in env["KAFKA_LISTENERS"].split(","))
    by_address = {address: name for name, address in advertised.items()}
    assert "kafka:9092" in by_address
    assert "127.0.0.1:9092" in by_address
    # the host address must be the one published: 127.0.0.1:9092 -> the host listener's port
    host_listener_port = int(listeners[by_address["127.0.0.1:9092"]].rsplit(":", 1)[1])
    published = {
        (str(p.get("host_ip", "")), int(p["published"]), int(p["target"]))
        if isinstance(p, dict)
        else _parse_port(str(p))
        for p in kafka.get("ports", [])
    }
    assert ("127.0.0.1", 9092, host_listener_port) in published
    assert kafka.get("healthcheck", {}).get("test"), "the consumers wait for Kafka's health"


def _parse_port(spec: str) -> tuple[str, int, int]:
    # docker-compose 1.29 prints short syntax: "127.0.0.1:9092:29092/tcp"
    host_ip, published, target = spec.split("/", maxsplit=1)[0].rsplit(":", 2)
    return host_ip, int(published), int(target)


def test_topics_are_created_with_twelve_partitions_before_anything_uses_them(
    compose: dict[str, Any],
) -> None:
    topics = service(compose, "topics")
    env = environment(topics)
    script = " ".join([*(topics.get("entrypoint") or []), *command(topics)])
    assert "/opt/kafka/bin/kafka-topics.sh" in script
    assert "--partitions 12" in script
    assert "--if-not-exists" in script
    created = {env["FULFILLMENT_TOPIC"], env["DLQ_TOPIC"], env["PARKING_TOPIC"]}
    assert created == {MAIN_TOPIC, f"{MAIN_TOPIC}.dlq", f"{MAIN_TOPIC}.parked"}
    consumer_env = environment(service(compose, "consumer"))
    for name in ("FULFILLMENT_TOPIC", "DLQ_TOPIC", "PARKING_TOPIC"):
        assert consumer_env.get(name, env[name]) == env[name], (
            f"{name} differs from the created topic"
        )
    assert topics["depends_on"]["kafka"]["condition"] == "service_healthy"


def test_the_sandbox_runs_lenient_on_the_port_the_consumer_calls(compose: dict[str, Any]) -> None:
    sandbox = service(compose, "sandbox")
    cmd = command(sandbox)
    assert cmd[0] == "sandbox"
    assert "--lenient" in cmd
    assert "--strict" not in cmd
    # loopback inside a container is unreachable from the consumers
    assert cmd[cmd.index("--host") + 1] == "0.0.0.0"  # noqa: S104
    port = int(cmd[cmd.index("--port") + 1]) if "--port" in cmd else 8080
    assert urlsplit(environment(service(compose, "consumer"))["DR_API_URL"]).port == port
    assert sandbox.get("healthcheck", {}).get("test"), "the consumer waits for the sandbox's health"


def test_the_sandbox_and_simulator_images_include_the_sandbox_extra(
    compose: dict[str, Any],
) -> None:
    for name in ("sandbox", "simulator", "consumer"):
        build = service(compose, name)["build"]
        assert build["dockerfile"] == "deploy/Dockerfile"
        assert "sandbox" in str(build.get("args", {}).get("EXTRAS", "")).split(","), name


def test_the_consumer_and_simulator_start_after_kafka_topics_and_sandbox_are_ready(
    compose: dict[str, Any],
) -> None:
    expected = {
        "kafka": "service_healthy",
        "topics": "service_completed_successfully",
        "sandbox": "service_healthy",
    }
    for name in ("consumer", "simulator"):
        depends = service(compose, name)["depends_on"]
        assert {dep: cond["condition"] for dep, cond in depends.items()} == expected, name


def test_the_simulator_publishes_a_seeded_run_against_the_sandbox(compose: dict[str, Any]) -> None:
    simulator = service(compose, "simulator")
    cmd = command(simulator)
    assert cmd[0] == "simulate"
    assert "--publish" in cmd
    assert cmd[cmd.index("--seed") + 1] == "7"
    assert int(cmd[cmd.index("--orders") + 1]) == 2000
    assert (
        cmd[cmd.index("--sandbox-url") + 1]
        == environment(service(compose, "consumer"))["DR_API_URL"]
    )
    assert environment(simulator)["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
    # the image's check probes the consumer's health port, which the simulator does not serve
    # (docker-compose 1.29 rewrites `disable: true` as test: ["NONE"])
    check = simulator["healthcheck"]
    assert check.get("disable") is True or check.get("test") == ["NONE"]


def test_the_contract_names_match_product_md() -> None:
    if not PRODUCT_MD.exists():
        pytest.skip(f"{PRODUCT_MD} is not checked out next to the repository")
    text = PRODUCT_MD.read_text()
    interfaces = text.split("## Interfaces", 1)[1].split("\n## ", 1)[0]
    names: set[str] = set()
    for row in re.findall(r"^\|\s*([^|]+?)\s*\|", interfaces, flags=re.MULTILINE):
        names.update(re.findall(r"\b[A-Z][A-Z0-9]*_[A-Z0-9_]*[A-Z0-9]\b", row))
    assert names == CONTRACT_ENV


# ---------------------------------------------------------------- deploy/Dockerfile


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str


def parse_dockerfile(text: str) -> list[list[Instruction]]:
    """Instructions grouped by stage (one list per FROM), continuations joined, comments dropped."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # Docker drops comment lines even inside a continuation
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    if pending:
        logical.append(pending)
    stages: list[list[Instruction]] = [[]]  # stage 0: global ARGs before the first FROM
    for line in logical:
        keyword, _, arguments = line.partition(" ")
        instruction = Instruction(keyword.upper(), arguments.strip())
        if instruction.keyword == "FROM":
            stages.append([])
        stages[-1].append(instruction)
    return stages


@pytest.fixture(scope="module")
def dockerfile_stages() -> list[list[Instruction]]:
    stages = parse_dockerfile(DOCKERFILE.read_text())
    assert len(stages) >= 3, "expected global ARGs plus a builder and a final stage"
    return stages


def only(stage: list[Instruction], keyword: str) -> Instruction:
    # Docker honours only the last USER/HEALTHCHECK/ENTRYPOINT/CMD of a stage
    found = [i for i in stage if i.keyword == keyword]
    assert found, f"the final stage has no {keyword}"
    return found[-1]


def test_the_image_is_multi_stage_and_the_final_stage_copies_only_the_venv(
    dockerfile_stages: list[list[Instruction]],
) -> None:
    global_args = {
        i.arguments.split("=", 1)[0]: i.arguments.split("=", 1)[1]
        for i in dockerfile_stages[0]
        if i.keyword == "ARG" and "=" in i.arguments
    }
    final = dockerfile_stages[-1]
    base = final[0].arguments.split()[0]
    base = re.sub(r"\$\{(\w+)\}", lambda m: global_args.get(m.group(1), m.group(0)), base)
    assert re.fullmatch(r"python:3\.11-slim(-\w+)?", base), base
    copies = [i.arguments for i in final if i.keyword in {"COPY", "ADD"}]
    assert copies, "the final stage copies nothing"
    assert all(c.startswith("--from=builder") for c in copies), copies
    assert any("/opt/venv" in c for c in copies)


def test_the_final_stage_runs_as_a_non_root_user(
    dockerfile_stages: list[list[Instruction]],
) -> None:
    user = only(dockerfile_stages[-1], "USER").arguments.split(":")[0]
    assert user not in {"root", "0", ""}
    # numeric, so Kubernetes' runAsNonRoot can check it without the image's /etc/passwd
    assert user.isdigit()


def test_the_final_stage_checks_health_on_the_health_port(
    dockerfile_stages: list[list[Instruction]],
) -> None:
    check = only(dockerfile_stages[-1], "HEALTHCHECK").arguments
    assert "NONE" not in check.split()
    assert "CMD" in check.split()
    assert "http://127.0.0.1:${HEALTH_PORT:-8000}/healthz" in check
    # python:3.11-slim ships neither curl nor wget
    assert "curl" not in check
    assert "wget" not in check


def test_the_image_runs_the_consumer_by_default(dockerfile_stages: list[list[Instruction]]) -> None:
    final = dockerfile_stages[-1]
    assert json.loads(only(final, "ENTRYPOINT").arguments) == ["fulfillment-consumer"]
    assert json.loads(only(final, "CMD").arguments) == ["run"]


def test_the_sandbox_extra_is_a_build_argument(dockerfile_stages: list[list[Instruction]]) -> None:
    builder = dockerfile_stages[1]
    assert any(i.keyword == "ARG" and i.arguments.split("=")[0] == "EXTRAS" for i in builder)
    assert any(i.keyword == "RUN" and "${EXTRAS" in i.arguments for i in builder)


def test_the_dockerignore_keeps_local_state_out_of_the_build_context() -> None:
    patterns = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv", "tests", ".env"} <= patterns
    assert "**/__pycache__" in patterns
