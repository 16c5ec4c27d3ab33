"""deploy/kubernetes, checked offline: `kubectl kustomize` builds the base and the production
overlay, every resource validates against the Kubernetes schemas (kubernetes-validate, strict:
unknown fields fail), and the Deployments have what operating them relies on."""

from __future__ import annotations

import subprocess
from functools import cache
from typing import Any

import kubernetes_validate
import pytest
import yaml
from pydantic_settings import BaseSettings

from tests.ops.compose import ROOT, service_settings

KUBERNETES = ROOT / "deploy" / "kubernetes"
KUBERNETES_VERSION = "1.30"
SETTINGS: dict[str, type[BaseSettings]] = service_settings()
VARIANTS = ("base", "overlays/production")


@cache
def build(variant: str) -> tuple[dict[str, Any], ...]:
    output = subprocess.run(
        ["kubectl", "kustomize", str(KUBERNETES / variant)],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    return tuple(document for document in yaml.safe_load_all(output) if document)


def resources(variant: str, kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in build(variant) if doc["kind"] == kind}


def config_maps(variant: str) -> dict[str, dict[str, str]]:
    """ConfigMaps by their name before kustomize's hash suffix."""
    return {
        name.rsplit("-", 1)[0]: doc.get("data", {})
        for name, doc in resources(variant, "ConfigMap").items()
    }


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_resource_is_valid_kubernetes(variant: str) -> None:
    documents = build(variant)
    assert {doc["kind"] for doc in documents} >= {"Deployment", "Service", "ConfigMap", "Job"}
    for document in documents:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_the_validator_would_catch_a_mistake() -> None:
    deployment = dict(resources("base", "Deployment")["registration"])
    deployment["spec"] = {**deployment["spec"], "replica": 2}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("variant", VARIANTS)
def test_each_service_runs_non_root_with_probes_and_resources(variant: str) -> None:
    deployments = resources(variant, "Deployment")
    assert set(deployments) == set(SETTINGS)
    services = resources(variant, "Service")
    for name, deployment in deployments.items():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        [container] = pod["containers"]
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
        port = container["ports"][0]["containerPort"]
        assert port == SETTINGS[name].model_fields[f"{name}_port"].default
        assert services[name]["spec"]["ports"][0]["port"] == port


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_setting_given_to_a_service_is_a_field_of_its_settings_model(variant: str) -> None:
    maps = config_maps(variant)
    for name, deployment in resources(variant, "Deployment").items():
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        variables = {item["name"]: item for item in container.get("env", [])}
        for source in container["envFrom"]:
            referenced = source["configMapRef"]["name"].rsplit("-", 1)[0]
            variables.update({key: {"value": value} for key, value in maps[referenced].items()})
        model = SETTINGS[name]
        unknown = [v for v in variables if v.removeprefix("WOK_").lower() not in model.model_fields]
        assert not unknown, f"{name} has no setting for {unknown}"
        # the values are valid for the model (a Secret's value stands in as "from-secret")
        model(
            **{
                v.removeprefix("WOK_").lower(): item.get("value", "from-secret")
                for v, item in variables.items()
            }
        )
        secrets = {
            item["valueFrom"]["secretKeyRef"]["key"]
            for item in variables.values()
            if "valueFrom" in item
        }
        expected = {"service-key"} | {
            "registration": {"admin-key"},
            "reporting": {"federal-key"},
        }.get(name, set())
        if variant == "overlays/production":
            # each service reaches Kafka as its own SCRAM user
            expected |= {name}
            assert variables["WOK_KAFKA_SASL_USERNAME"]["value"] == f"wok-{name}"
        assert secrets == expected


def test_production_scales_out_on_a_cluster() -> None:
    deployments = resources("overlays/production", "Deployment")
    common = config_maps("overlays/production")["wok-common"]
    partitions = int(common["WOK_TOPIC_PARTITIONS"])
    for name in ("registration", "assessment", "notification"):
        assert 1 < deployments[name]["spec"]["replicas"] <= partitions
    assert len(common["WOK_KAFKA_BOOTSTRAP"].split(",")) == 3
    assert "replicaSet=rs0" in common["WOK_MONGODB_URI"]
    for deployment in deployments.values():
        assert deployment["metadata"]["namespace"] == "weltoffene-kommune"
        image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
        assert image.startswith("registry.example.org/") and image.endswith(":0.1.0")
    [job] = resources("overlays/production", "Job").values()
    env = {item["name"]: item for item in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["REPLICATION_FACTOR"]["value"] == "3"
    assert env["PARTITIONS"]["valueFrom"]["configMapKeyRef"]["key"] == "WOK_TOPIC_PARTITIONS"


def test_the_topic_job_runs_the_provisioning_script() -> None:
    [job] = resources("base", "Job").values()
    scripts = config_maps("base")["wok-topics"]
    assert scripts["create-topics.sh"] == (KUBERNETES / "base" / "create-topics.sh").read_text()
    volume = job["spec"]["template"]["spec"]["volumes"][0]["configMap"]["name"]
    assert volume.startswith("wok-topics-")
    assert job["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
