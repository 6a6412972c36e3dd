"""docker-compose.yml and k8s/ stay in step with the code: pinned versions, real settings,
real commands, loopback-only ports, hardened pods."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from streams.cli import app
from streams.settings import DEFAULT_KAFKA_VERSION, DEFAULT_WEAVIATE_VERSION, Settings, env_name

ROOT = Path(__file__).resolve().parents[1]
SETTING_VARS = {env_name(f) for f in Settings.model_fields}


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def _kustomize_resources(base: Path) -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((base / "kustomization.yaml").read_text())
    docs = []
    for name in kustomization["resources"]:
        docs += [d for d in yaml.safe_load_all((base / name).read_text()) if d]
    return docs


def _assert_real_command(args: list[str]) -> None:
    result = CliRunner().invoke(app, [*args, "--help"])
    assert result.exit_code == 0, f"`docstreams {' '.join(args)}` is not a command: {result.output}"


def test_compose_images_match_the_pinned_versions() -> None:
    services = _compose()["services"]
    assert services["kafka"]["image"] == f"apache/kafka:{DEFAULT_KAFKA_VERSION}"
    assert services["weaviate"]["image"].endswith(f":{DEFAULT_WEAVIATE_VERSION.lstrip('v')}")


def test_compose_publishes_ports_on_loopback_only() -> None:
    for name, service in _compose()["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} on all interfaces"


def test_compose_docstreams_services_use_real_settings_and_commands() -> None:
    for service in _compose()["services"].values():
        if service.get("image", "").startswith("docstreams"):
            assert set(service["environment"]) <= SETTING_VARS
            _assert_real_command(service["command"])


@pytest.mark.parametrize("base", sorted((ROOT / "k8s").glob("*/kustomization.yaml")))
def test_kubernetes_pods_are_hardened_and_run_real_commands(base: Path) -> None:
    resources = _kustomize_resources(base.parent)
    kinds = {r["kind"] for r in resources}
    assert {"Namespace", "ConfigMap"} <= kinds
    for r in resources:
        if r["kind"] == "ConfigMap":
            assert set(r["data"]) <= SETTING_VARS
        pod = r.get("spec", {}).get("template", {}).get("spec")
        if pod is None:
            continue
        assert pod["securityContext"]["runAsNonRoot"] is True
        for container in pod["containers"]:
            assert container["securityContext"]["readOnlyRootFilesystem"] is True
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            assert "memory" in container["resources"]["limits"]
            _assert_real_command(container["args"])
