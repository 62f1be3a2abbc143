"""The deploy manifests, checked offline by the tools their users run: every Kubernetes
manifest against the API's own schemas (kubernetes-validate, strict: an unknown field is an
error), the compose file by `docker compose config`; and what keel asks of them (probes,
grace periods, disruption budgets, three NATS nodes, settings that exist)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from deploy.settings import table

ROOT = Path(__file__).resolve().parents[2]
# Every resource file; kustomization.yaml lists them (and is no resource of the API).
KUSTOMIZATION = ROOT / "deploy" / "k8s" / "kustomization.yaml"
K8S = sorted(set((ROOT / "deploy" / "k8s").glob("*.yaml")) - {KUSTOMIZATION})
COMPOSE = ROOT / "deploy" / "compose" / "docker-compose.yml"
# The oldest Kubernetes the manifests are meant for (PreStop's `sleep` is 1.30's) and the
# newest whose schemas kubernetes-validate carries.
KUBERNETES_VERSIONS = ["1.30", kubernetes_validate.latest_version()]
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet"}


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def k8s_resources() -> list[dict[str, Any]]:
    return [doc for path in K8S for doc in documents(path)]


def known_settings() -> set[str]:
    return set(re.findall(r"`(KEEL_[A-Z0-9_]+)`", table()))


def keel_variables(environment: dict[str, Any] | list[dict[str, Any]]) -> set[str]:
    if isinstance(environment, dict):
        return {name for name in environment if name.startswith("KEEL_")}
    names = [entry["name"] for entry in environment]
    return {name for name in names if name.startswith("KEEL_")}


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("path", K8S, ids=lambda path: path.name)
def test_every_kubernetes_manifest_validates_against_the_api_schemas(
    path: Path, version: str
) -> None:
    resources = documents(path)
    assert resources, f"{path.name} holds no resource"
    for resource in resources:
        try:
            kubernetes_validate.validate(resource, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            name = f"{resource['kind']}/{resource['metadata']['name']}"
            path_in = ".".join(map(str, exc.path))
            pytest.fail(f"{path.name}: {name} at {path_in}: {exc.message}")


def test_the_kustomization_applies_every_manifest() -> None:
    (kustomization,) = documents(KUSTOMIZATION)
    assert kustomization["kind"] == "Kustomization"
    assert sorted(kustomization["resources"]) == [path.name for path in K8S]


def test_the_kubernetes_workloads_stop_gracefully_are_probed_and_budgeted() -> None:
    resources = k8s_resources()
    workloads = {r["metadata"]["name"]: r for r in resources if r["kind"] in WORKLOADS}
    assert set(workloads) == {"nats", "postgres", "brain", "hands", "gateway"}
    budgets = {
        r["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"]
        for r in resources
        if r["kind"] == "PodDisruptionBudget"
    }
    assert budgets == {"nats", "brain", "hands", "gateway"}
    for name, workload in workloads.items():
        pod = workload["spec"]["template"]["spec"]
        assert pod["terminationGracePeriodSeconds"] >= 30, name
        for container in pod["containers"]:
            assert "livenessProbe" in container, name
    assert workloads["nats"]["spec"]["replicas"] == 3
    assert workloads["brain"]["spec"]["replicas"] == 2
    assert workloads["gateway"]["spec"]["replicas"] == 2
    gateway = workloads["gateway"]["spec"]["template"]["spec"]["containers"][0]
    assert gateway["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert gateway["livenessProbe"]["httpGet"]["path"] == "/healthz"
    brain = workloads["brain"]["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in brain["env"]}
    assert env["KEEL_BRAIN_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"


def test_the_kubernetes_manifests_set_only_real_settings() -> None:
    used: set[str] = set()
    for resource in k8s_resources():
        if resource["kind"] == "ConfigMap":
            used |= keel_variables(resource["data"])
        if resource["kind"] == "Secret":
            used |= keel_variables(resource["stringData"])
        if resource["kind"] in WORKLOADS:
            for container in resource["spec"]["template"]["spec"]["containers"]:
                used |= keel_variables(container.get("env", []))
    assert "KEEL_NATS_URL" in used and "KEEL_STORE_URL" in used
    assert not used - known_settings(), sorted(used - known_settings())


def compose_command() -> list[str]:
    """`docker compose` (the plugin), else `docker-compose` (the Debian package); a missing
    one fails where Docker is required (CI), else skips."""
    if shutil.which("docker") and (
        subprocess.run(
            ["docker", "compose", "version"], check=False, capture_output=True
        ).returncode
        == 0
    ):
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if os.environ.get("KEEL_REQUIRE_DOCKER") == "1":
        pytest.fail("docker compose is required here (KEEL_REQUIRE_DOCKER=1) but is missing")
    pytest.skip("docker compose is not installed; to run this: apt-get install docker-compose")


def test_the_compose_file_is_valid_and_runs_the_whole_fleet() -> None:
    result = subprocess.run(
        [*compose_command(), "-p", "keel", "-f", str(COMPOSE), "config"],
        check=False,
        capture_output=True,
        text=True,
        # The variables the file takes are all defaulted: it must be valid without them.
        env={"PATH": os.environ["PATH"]},
    )
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    assert sorted(services) == [
        "brain-1",
        "brain-2",
        "gateway-1",
        "gateway-2",
        "hands-1",
        "hands-2",
        "nats-1",
        "nats-2",
        "nats-3",
        "postgres",
    ]
    for n in (1, 2, 3):
        command = services[f"nats-{n}"]["command"]
        assert "--jetstream" in command and "--cluster_name=keel" in command
        routes = next(arg for arg in command if arg.startswith("--routes="))
        assert routes.count("nats://nats-") == 3
    used: set[str] = set()
    for name, service in services.items():
        environment = service.get("environment", {})
        used |= keel_variables(environment)
        if name.startswith(("brain", "hands", "gateway")):
            assert environment["KEEL_NATS_URL"].count("nats://") == 3, name
            assert "healthcheck" in service, name
    for n in (1, 2):
        gateway = services[f"gateway-{n}"]
        assert "/readyz" in " ".join(gateway["healthcheck"]["test"])
        assert services[f"brain-{n}"]["environment"]["KEEL_BRAIN_ID"] == f"brain-{n}"
        # The hands hold no credentials of the store or the models.
        assert "KEEL_STORE_URL" not in services[f"hands-{n}"]["environment"]
        assert not any("API_KEY" in v for v in services[f"hands-{n}"]["environment"])
    assert not used - known_settings(), sorted(used - known_settings())
