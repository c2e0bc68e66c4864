"""deploy/k8s, deploy/prometheus and deploy/grafana keep the deployment and metrics contracts.

Kubernetes manifests are validated offline against the Kubernetes 1.30 OpenAPI schemas that the
`kubernetes-validate` package ships (strict: unknown fields fail). KEDA's ScaledObject is a CRD the
package has no schema for, so it is checked structurally. Alert expressions and dashboard queries
may only use the metric names and labels of docs/metrics.md (parsed from its table): renaming a
metric in the code and the doc breaks this test until alerts and dashboard follow. `promtool`,
`kubectl` and `docker-compose` sharpen the checks when installed and are skipped otherwise.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
from pathlib import Path, PurePosixPath
from typing import Any, cast

import kubernetes_validate  # type: ignore[import-untyped, unused-ignore]
import pytest
import yaml

from tests.unit.test_deploy_compose import CONTRACT_ENV, LIBRDKAFKA_PREFIX

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
PROMETHEUS_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "fulfillment-consumer.json"
METRICS_MD = ROOT / "docs" / "metrics.md"
RUNBOOK = ROOT / "docs" / "runbook.md"
README = ROOT / "README.md"
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"

# A release the package ships schemas for, and one clusters still run widely.
KUBERNETES_VERSION = "1.30.0"
METRIC_PREFIX = "fulfillment_consumer_"
# Labels Prometheus itself attaches to every scraped series, plus a histogram's bucket bound.
TARGET_LABELS = frozenset({"instance", "job"})
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
# Documented in docs/metrics.md (the port of /healthz, /readyz, /metrics) but not in README's table.
DOCUMENTED_EXTRAS = frozenset({"HEALTH_PORT"})


# ---------------------------------------------------------------- loading


def load_yaml_documents(path: Path) -> list[dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    assert all(isinstance(d, dict) for d in docs), path
    return cast(list[dict[str, Any]], docs)


def manifests() -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            found.extend(load_yaml_documents(path))
    return found


def by_kind(kind: str) -> dict[str, Any]:
    matching = [m for m in manifests() if m["kind"] == kind]
    assert len(matching) == 1, f"expected one {kind} in deploy/k8s, found {len(matching)}"
    return matching[0]


def core(manifest: dict[str, Any]) -> bool:
    # groups without a dot (v1, apps/v1, policy/v1) are Kubernetes' own; keda.sh is a CRD
    group = str(manifest["apiVersion"]).rpartition("/")[0]
    return "." not in group


def container() -> dict[str, Any]:
    containers = by_kind("Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return cast(dict[str, Any], containers[0])


def config_data() -> dict[str, str]:
    return {str(k): str(v) for k, v in by_kind("ConfigMap")["data"].items()}


def health_port() -> int:
    return int(config_data()["HEALTH_PORT"])


def drain_timeout() -> float:
    # README: DRAIN_TIMEOUT_SECONDS defaults to 20
    return float(config_data().get("DRAIN_TIMEOUT_SECONDS", "20"))


def partitions() -> int:
    # the compose `topics` service creates the topic; production must match it (runbook, "Scale")
    match = re.search(r"--partitions (\d+)", COMPOSE_FILE.read_text())
    assert match, "docker-compose.yml no longer creates the topic with --partitions"
    return int(match.group(1))


# ---------------------------------------------------------------- Kubernetes schemas


@pytest.mark.parametrize(
    "manifest",
    [m for m in manifests() if core(m)],
    ids=lambda m: f"{m['kind']}/{m['metadata']['name']}",
)
def test_core_manifests_validate_against_the_kubernetes_schemas(manifest: dict[str, Any]) -> None:
    kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)


def test_the_schema_validation_rejects_a_broken_deployment() -> None:
    # proves the validator really runs offline here, rather than passing everything
    broken = copy.deepcopy(by_kind("Deployment"))
    broken["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}  # typo
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_every_manifest_is_namespace_agnostic() -> None:
    for manifest in manifests():
        assert "namespace" not in manifest["metadata"], manifest["metadata"]["name"]
    assert not any(m["kind"] == "Namespace" for m in manifests())


def test_the_kustomization_lists_every_manifest_but_the_placeholder_secret() -> None:
    kustomization = load_yaml_documents(K8S / "kustomization.yaml")[0]
    listed = set(kustomization["resources"])
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    secret_files = {p.name for p in K8S.glob("*.yaml") if "kind: Secret" in p.read_text()}
    assert secret_files, "no placeholder Secret in deploy/k8s"
    # applying the placeholder would overwrite the real key created out of band
    assert not listed & secret_files
    assert listed == files - secret_files
    images = {i["name"] for i in kustomization.get("images", [])}
    assert container()["image"] in images, "the image's registry/tag is set in one place"


def test_kubectl_builds_the_kustomization() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed")
    result = subprocess.run(
        [kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    kinds = {d["kind"] for d in yaml.safe_load_all(result.stdout) if d}
    assert kinds == {"ConfigMap", "Deployment", "PodDisruptionBudget", "ScaledObject"}


# ---------------------------------------------------------------- the Deployment's contract


def test_the_deployment_runs_three_members_of_the_image() -> None:
    deployment = by_kind("Deployment")
    assert deployment["spec"]["replicas"] == 3
    assert container()["args"] == ["run"]
    config_refs = [e["configMapRef"]["name"] for e in container().get("envFrom", [])]
    assert config_refs == [by_kind("ConfigMap")["metadata"]["name"]]


def port_number(port: int | str) -> int:
    if isinstance(port, int):
        return port
    named = {p["name"]: p["containerPort"] for p in container()["ports"]}
    assert port in named, f"probe port {port!r} is not a container port"
    return int(named[port])


@pytest.mark.parametrize(
    ("probe", "path"), [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")]
)
def test_probes_hit_the_documented_endpoints_on_the_health_port(probe: str, path: str) -> None:
    get = container()[probe]["httpGet"]
    assert get["path"] == path
    assert port_number(get["port"]) == health_port()


def test_prometheus_scrapes_the_health_port() -> None:
    annotations = by_kind("Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == health_port()
    assert annotations.get("prometheus.io/path", "/metrics") == "/metrics"


def test_the_grace_period_outlasts_the_drain_and_the_leave() -> None:
    grace = by_kind("Deployment")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    # after the drain: a synchronous commit and leaving the group, both bounded but not free
    assert grace >= drain_timeout() + 15, f"grace {grace}s vs drain {drain_timeout()}s"


def test_the_key_comes_from_a_secret_mounted_as_a_file() -> None:
    env = {e["name"]: e for e in container().get("env", [])}
    assert "DR_API_KEY" not in env, "the key must not be an environment value"
    assert "DR_API_KEY" not in config_data()
    assert "DR_API_KEY_FILE" not in config_data(), "the path belongs with the mount"
    key_file = PurePosixPath(env["DR_API_KEY_FILE"]["value"])
    mounts = {m["mountPath"]: m for m in container()["volumeMounts"]}
    mount = mounts[str(key_file.parent)]
    assert mount.get("readOnly") is True
    volumes = {v["name"]: v for v in by_kind("Deployment")["spec"]["template"]["spec"]["volumes"]}
    source = volumes[mount["name"]]["secret"]
    secret = by_kind("Secret")
    assert source["secretName"] == secret["metadata"]["name"]
    items = {i["path"]: i["key"] for i in source.get("items", [])}
    secret_key = items.get(key_file.name, key_file.name)
    assert secret_key in {**secret.get("stringData", {}), **secret.get("data", {})}
    # the committed Secret is a placeholder: never a live key
    assert not str(secret.get("stringData", {}).get(secret_key, "")).startswith("sk_live_")


def test_the_member_runs_unprivileged_as_the_image_user() -> None:
    pod = by_kind("Deployment")["spec"]["template"]["spec"]
    ctx = container()["securityContext"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert ctx["readOnlyRootFilesystem"] is True
    assert ctx["allowPrivilegeEscalation"] is False
    assert ctx["capabilities"]["drop"] == ["ALL"]
    user = re.search(r"^USER (\d+)", DOCKERFILE.read_text(), flags=re.MULTILINE)
    assert user, "deploy/Dockerfile has no numeric USER"
    assert pod["securityContext"]["runAsUser"] == int(user.group(1))


def test_the_pod_gets_no_service_link_variables() -> None:
    # a Service named kafka-... would otherwise inject KAFKA_*_SERVICE_HOST, KAFKA_*_PORT_...
    pod = by_kind("Deployment")["spec"]["template"]["spec"]
    assert pod["enableServiceLinks"] is False


def test_the_member_has_requests_and_limits() -> None:
    resources = container()["resources"]
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(resources[kind]), kind


def readme_variables() -> set[str]:
    section = README.read_text().split("## Running a member", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\|\s*([^|]+?)\s*\|", section, flags=re.MULTILINE)
    return {n for row in rows for n in re.findall(r"\b[A-Z][A-Z0-9]*_[A-Z0-9_]*[A-Z0-9]\b", row)}


def test_environment_names_are_the_contract_or_documented() -> None:
    names = set(config_data()) | {e["name"] for e in container().get("env", [])}
    allowed = CONTRACT_ENV | readme_variables() | DOCUMENTED_EXTRAS
    unknown = {n for n in names - allowed if not n.startswith(LIBRDKAFKA_PREFIX)}
    assert not unknown, f"env names outside PRODUCT.md / README: {sorted(unknown)}"
    assert {"KAFKA_BOOTSTRAP_SERVERS", "FULFILLMENT_TOPIC", "CONSUMER_GROUP"} <= names


def test_a_disruption_budget_stops_one_member_at_a_time() -> None:
    pdb = by_kind("PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1
    pod_labels = by_kind("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()


# ---------------------------------------------------------------- KEDA (CRD: structural)


def test_the_scaled_object_is_structurally_valid_and_targets_the_deployment() -> None:
    scaled = by_kind("ScaledObject")
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    spec = scaled["spec"]
    known = {
        "scaleTargetRef", "minReplicaCount", "maxReplicaCount", "pollingInterval",
        "cooldownPeriod", "idleReplicaCount", "advanced", "triggers", "fallback",
        "initialCooldownPeriod",
    }  # fmt: skip
    assert set(spec) <= known, f"unknown ScaledObject fields: {sorted(set(spec) - known)}"
    target = spec["scaleTargetRef"]
    assert target.get("kind", "Deployment") == "Deployment"
    assert target["name"] == by_kind("Deployment")["metadata"]["name"]
    for field in ("minReplicaCount", "maxReplicaCount", "pollingInterval", "cooldownPeriod"):
        assert isinstance(spec[field], int), field
    # KEDA reads trigger metadata as strings; an int here is rejected by its admission webhook
    for trigger in spec["triggers"]:
        assert all(isinstance(v, str) for v in trigger["metadata"].values()), trigger


def test_keda_never_scales_beyond_the_partition_count() -> None:
    spec = by_kind("ScaledObject")["spec"]
    assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"] <= partitions()


def test_keda_watches_the_lag_of_the_configured_group_and_topic() -> None:
    (trigger,) = by_kind("ScaledObject")["spec"]["triggers"]
    assert trigger["type"] == "kafka"
    meta = trigger["metadata"]
    config = config_data()
    assert meta["bootstrapServers"] == config["KAFKA_BOOTSTRAP_SERVERS"]
    assert meta["consumerGroup"] == config["CONSUMER_GROUP"]
    assert meta["topic"] == config["FULFILLMENT_TOPIC"]
    assert int(meta["lagThreshold"]) > 0


# ---------------------------------------------------------------- the metrics contract


def documented_metrics() -> dict[str, tuple[str, set[str]]]:
    """docs/metrics.md's table: short name -> (type, labels)."""
    metrics: dict[str, tuple[str, set[str]]] = {}
    for name, kind, labels in re.findall(
        r"^\|\s*`(\w+)`\s*\|\s*(\w+)\s*\|\s*([^|]*?)\s*\|", METRICS_MD.read_text(), re.MULTILINE
    ):
        metrics[name] = (kind, {label.strip() for label in re.findall(r"[a-z_]+", labels)})
    assert len(metrics) >= 15, "could not parse docs/metrics.md's table"
    return metrics


def series_names() -> set[str]:
    names: set[str] = set()
    for name, (kind, _) in documented_metrics().items():
        names.add(METRIC_PREFIX + name)
        if kind == "histogram":
            names.update(METRIC_PREFIX + name + suffix for suffix in HISTOGRAM_SUFFIXES)
    return names


def allowed_labels() -> set[str]:
    labels = set(TARGET_LABELS)
    for kind, names in documented_metrics().values():
        labels |= names
        if kind == "histogram":
            labels.add("le")
    return labels


def metric_problems(expr: str) -> list[str]:
    problems: list[str] = []
    bare = re.sub(r'"[^"]*"', '""', expr)  # label values may contain anything
    for name in re.findall(rf"\b{METRIC_PREFIX}\w+", bare):
        if name not in series_names():
            problems.append(f"undocumented metric {name}")
    short = {n.removeprefix(METRIC_PREFIX) for n in series_names()}
    for token in re.findall(r"(?<![\w.$])([a-z_][a-z0-9_]*)\s*[{\[]", bare):
        if token in short:
            problems.append(f"{token} lacks the {METRIC_PREFIX} prefix")
    grouped = re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", bare)
    matchers = re.findall(r"[{,]\s*(\w+)\s*(?:=~|!~|!=|=)", bare)
    for label in [*(s.strip() for g in grouped for s in g.split(",") if s.strip()), *matchers]:
        if label not in allowed_labels():
            problems.append(f"undocumented label {label}")
    if not re.search(rf"\b{METRIC_PREFIX}\w+", bare):
        problems.append("uses none of the documented metrics")
    return problems


def test_the_metric_contract_check_can_fail() -> None:
    assert metric_problems("fulfillment_consumer_partition_lag > 0") == []
    assert metric_problems("fulfillment_consumer_partition_lagg > 0")
    assert metric_problems("max by (topic) (fulfillment_consumer_partition_lag)")
    assert metric_problems("sum(rate(events_parked_total[5m]))")


def alert_rules() -> list[dict[str, Any]]:
    groups = load_yaml_documents(ALERTS)[0]["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def runbook_anchors() -> set[str]:
    headings = re.findall(r"^#{1,6}\s+(.+?)\s*$", RUNBOOK.read_text(), flags=re.MULTILINE)
    # GitHub's anchors: lower case, punctuation dropped, spaces to hyphens
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda r: str(r["alert"]))
def test_alerts_use_only_documented_metrics_and_link_the_runbook(rule: dict[str, Any]) -> None:
    assert metric_problems(rule["expr"]) == []
    annotations = rule["annotations"]
    assert annotations["summary"].strip()
    assert annotations["description"].strip()
    path, _, anchor = annotations["runbook_url"].partition("#")
    assert path.endswith("docs/runbook.md")
    assert anchor in runbook_anchors(), f"docs/runbook.md has no section #{anchor}"
    templated = re.findall(r"\$labels\.(\w+)", json.dumps(annotations))
    assert set(templated) <= allowed_labels()


def test_the_alerts_cover_what_operators_must_hear_about() -> None:
    used = " ".join(rule["expr"] for rule in alert_rules())
    needed = {
        "partition_lag", "partition_oldest_unsettled_age_seconds", "events_parked_total",
        "configuration_failure", "dr_requests_total", "records_dead_lettered_total",
        "circuit_open", "member_ready",
    }  # fmt: skip
    missing = {n for n in needed if METRIC_PREFIX + n not in used}
    assert not missing, f"no alert on {sorted(missing)}"
    assert re.search(r'status=~"401\|403"', used), "auth failures by status"


def promtool_check(args: list[str]) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian: apt-get install prometheus)")
    result = subprocess.run(
        [promtool, *args], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_accepts_the_rules_and_the_compose_scrape_config() -> None:
    promtool_check(["check", "config", str(PROMETHEUS_CONFIG)])  # loads alerts.yml too


def dashboard() -> dict[str, Any]:
    return cast(dict[str, Any], json.loads(DASHBOARD.read_text()))


def dashboard_queries() -> list[tuple[str, str]]:
    return [
        (str(panel["title"]), str(target["expr"]))
        for panel in dashboard()["panels"]
        for target in panel.get("targets", [])
    ]


@pytest.mark.parametrize(("title", "expr"), dashboard_queries(), ids=lambda v: str(v)[:50])
def test_dashboard_queries_use_only_documented_metrics(title: str, expr: str) -> None:
    assert metric_problems(expr) == [], title


def test_promtool_parses_every_dashboard_query(tmp_path: Path) -> None:
    # Grafana's $__rate_interval is not PromQL; a fixed range stands in for it
    rules = [
        {"record": f"dashboard:query_{i}", "expr": expr.replace("$__rate_interval", "5m")}
        for i, (_, expr) in enumerate(dashboard_queries())
    ]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    promtool_check(["check", "rules", str(path)])


def test_the_dashboard_has_the_panels_operators_read() -> None:
    text = " ".join(expr for _, expr in dashboard_queries())
    needed = {
        "events_settled_total", "partition_lag", "partition_oldest_unsettled_age_seconds",
        "dr_requests_total", "dr_request_duration_seconds_bucket", "events_per_post",
        "orders_in_flight", "reconcile_reads_total", "rate_budget_wait_seconds_total",
        "records_dead_lettered_total", "events_parked_total", "member_ready", "circuit_open",
    }  # fmt: skip
    missing = {n for n in needed if METRIC_PREFIX + n not in text}
    assert not missing, f"no panel on {sorted(missing)}"
    assert "histogram_quantile(0.5," in text
    assert "histogram_quantile(0.99," in text


def test_the_dashboard_uses_the_provisioned_datasource() -> None:
    provisioned = load_yaml_documents(GRAFANA / "provisioning" / "datasources" / "prometheus.yml")
    uids = {d["uid"] for d in provisioned[0]["datasources"]}
    for panel in dashboard()["panels"]:
        assert panel["datasource"]["uid"] in uids, panel["title"]
        for target in panel.get("targets", []):
            assert target.get("datasource", panel["datasource"])["uid"] in uids
    ids = [panel["id"] for panel in dashboard()["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for legend in re.findall(r"\{\{\s*(\w+)\s*\}\}", DASHBOARD.read_text()):
        assert legend in allowed_labels(), f"legend uses undocumented label {legend}"


# ---------------------------------------------------------------- compose observability profile


def test_the_observability_profile_validates_with_docker_compose() -> None:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip("docker-compose not found; CI installs it: apt-get install -y docker-compose")
    result = subprocess.run(
        [binary, "-f", str(COMPOSE_FILE), "--profile", "observability", "config"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    for name, mounted in (("prometheus", "deploy/prometheus"), ("grafana", "deploy/grafana")):
        svc = services[name]
        assert svc["profiles"] == ["observability"], name
        assert re.fullmatch(r"[\w./-]+:v?\d+\.\d+\.\d+", svc["image"]), f"unpinned {svc['image']}"
        sources = [
            str(v["source"]) if isinstance(v, dict) else str(v).split(":", 1)[0]
            for v in svc["volumes"]
        ]
        assert any(str(ROOT / mounted) in s for s in sources), (name, sources)
    # the existing stack still starts without the profile
    for name in ("kafka", "topics", "sandbox", "consumer", "simulator"):
        assert "profiles" not in services[name], name
