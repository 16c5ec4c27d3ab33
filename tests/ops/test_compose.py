"""docker-compose.yml and the service images, checked without a Docker engine: the compose
file against the Compose Specification's JSON Schema (as vendored by check-jsonschema), the
services' settings against their settings models, and the Dockerfiles' shape."""

from __future__ import annotations

import json
import re
from importlib import resources
from typing import Any

import jsonschema
import pytest
from pydantic import SecretStr
from pydantic_settings import BaseSettings

from tests.ops.compose import (
    ENV_EXAMPLE,
    ROOT,
    MissingVariable,
    interpolate,
    load_compose,
    read_env_file,
    service_settings,
)

SETTINGS: dict[str, type[BaseSettings]] = service_settings()
REQUIRED_SECRETS = ("WOK_ADMIN_KEY", "WOK_FEDERAL_KEY", "WOK_SERVICE_KEY")


def filled_env() -> dict[str, str]:
    """`.env.example` with the keys an operator must set."""
    env = read_env_file(ENV_EXAMPLE)
    env.update({name: f"{name.lower()}-value" for name in REQUIRED_SECRETS})
    return env


def compose_schema() -> dict[str, Any]:
    vendor = resources.files("check_jsonschema.builtin_schemas.vendor")
    return json.loads((vendor / "compose-spec.json").read_text())


def settings_field(variable: str) -> str:
    return variable.removeprefix("WOK_").lower()


def test_the_compose_file_follows_the_compose_specification() -> None:
    schema = compose_schema()
    assert "services" in schema["properties"]
    for document in (load_compose(), load_compose(filled_env())):
        errors = sorted(
            jsonschema.Draft7Validator(schema).iter_errors(document), key=lambda e: e.path
        )
        assert not errors, [f"{list(e.path)}: {e.message}" for e in errors]


def test_the_schema_check_would_catch_a_mistake() -> None:
    broken = load_compose(filled_env())
    broken["services"]["registration"]["depends_on"]["kafka"]["condition"] = "service_up"
    assert list(jsonschema.Draft7Validator(compose_schema()).iter_errors(broken))


@pytest.mark.parametrize("secret", REQUIRED_SECRETS)
def test_compose_refuses_to_start_without_a_required_secret(secret: str) -> None:
    env = filled_env()
    env[secret] = ""
    with pytest.raises(MissingVariable, match=secret):
        load_compose(env)
    del env[secret]
    with pytest.raises(MissingVariable, match=secret):
        load_compose(env)


def test_the_env_example_leaves_the_secrets_to_the_operator() -> None:
    example = read_env_file(ENV_EXAMPLE)
    assert all(example[name] == "" for name in REQUIRED_SECRETS)
    with pytest.raises(MissingVariable):
        load_compose(example)


@pytest.mark.parametrize("service", SETTINGS)
def test_every_setting_in_compose_is_a_field_of_the_services_settings_model(
    service: str,
) -> None:
    model = SETTINGS[service]
    environment = load_compose(filled_env())["services"][service]["environment"]
    variables = {name: str(value) for name, value in environment.items()}
    assert all(name.startswith("WOK_") for name in variables)
    unknown = [name for name in variables if settings_field(name) not in model.model_fields]
    assert not unknown, f"{service} has no setting for {unknown}"
    # and the values are valid for the model (types, bounds)
    settings = model(**{settings_field(name): value for name, value in variables.items()})
    assert getattr(settings, f"{service}_port") == int(variables[f"WOK_{service.upper()}_PORT"])
    assert settings.kafka_bootstrap == "kafka:9092"  # type: ignore[attr-defined]
    assert settings.host == "0.0.0.0"  # type: ignore[attr-defined]
    for name, info in model.model_fields.items():
        if info.annotation is SecretStr and f"WOK_{name.upper()}" in variables:
            assert getattr(settings, name).get_secret_value() == f"wok_{name}-value"


def test_each_service_gets_the_secrets_it_needs_and_no_other() -> None:
    services = load_compose(filled_env())["services"]
    keys = {
        name: {variable for variable in services[name]["environment"] if variable.endswith("_KEY")}
        for name in SETTINGS
    }
    special = {
        "registration": {"WOK_ADMIN_KEY", "WOK_SERVICE_KEY"},
        "reporting": {"WOK_FEDERAL_KEY", "WOK_SERVICE_KEY"},
    }
    # every other service (assessment, notification, those `wok new service` adds) only
    # the service key
    assert keys == {name: special.get(name, {"WOK_SERVICE_KEY"}) for name in SETTINGS}
    assert {"assessment", "notification"} <= set(keys)


def test_services_start_after_their_dependencies_are_healthy_and_check_their_own_health() -> None:
    services = load_compose(filled_env())["services"]
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert "broker,controller" in services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"]
    assert services["kafka"]["environment"]["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert services["mongodb"]["image"].startswith("mongo:")
    assert services["mailpit"]["image"].startswith("axllent/mailpit:")
    for infrastructure in ("kafka", "mongodb", "mailpit"):
        assert services[infrastructure]["healthcheck"]["test"]
    assert services["kafka-topics"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    for name in SETTINGS:
        service = services[name]
        assert service["build"] == {"context": ".", "dockerfile": f"services/{name}/Dockerfile"}
        conditions = {dep: spec["condition"] for dep, spec in service["depends_on"].items()}
        assert conditions["kafka"] == conditions["mongodb"] == "service_healthy"
        assert conditions["kafka-topics"] == "service_completed_successfully"
        port = service["environment"][f"WOK_{name.upper()}_PORT"]
        assert f"http://127.0.0.1:{port}/readyz" in " ".join(service["healthcheck"]["test"])
    notification = services["notification"]
    assert notification["depends_on"]["mailpit"]["condition"] == "service_healthy"
    assert notification["environment"]["WOK_SMTP_HOST"] == "mailpit"
    assert notification["environment"]["WOK_REGISTRATION_URL"] == "http://registration:8001"


def test_the_provisioning_step_gets_the_services_prefix_and_partitions() -> None:
    env = filled_env() | {"WOK_TOPIC_PREFIX": "staging.", "WOK_TOPIC_PARTITIONS": "12"}
    compose = load_compose(env)
    provisioning = compose["services"]["kafka-topics"]
    assert provisioning["environment"]["TOPIC_PREFIX"] == "staging."
    assert provisioning["environment"]["PARTITIONS"] == "12"
    script = provisioning["volumes"][0].split(":")[0]
    assert (ROOT / script).is_file()
    for name in SETTINGS:
        assert compose["services"][name]["environment"]["WOK_TOPIC_PREFIX"] == "staging."


def dockerfile(name: str) -> str:
    return (ROOT / "services" / name / "Dockerfile").read_text()


@pytest.mark.parametrize("service", SETTINGS)
def test_each_service_image_is_multi_stage_slim_non_root_with_a_healthcheck(service: str) -> None:
    text = dockerfile(service)
    stages = re.findall(r"^FROM (\S+)", text, re.M)
    assert len(stages) == 2 and all(image == "python:3.11-slim" for image in stages)
    user = re.findall(r"^USER (\S+)", text, re.M)
    assert user and not user[-1].startswith(("root", "0"))
    assert "/healthz" in re.search(r"^HEALTHCHECK .*?CMD (.*)$", text, re.M | re.S)[1]  # type: ignore[index]
    assert re.search(rf'^CMD \["python", "-m", "wok_{service}"\]', text, re.M)
    # contracts, runtime and the service itself, installed from the repository (context = root)
    sources = re.findall(r"^COPY (?!--from)(\S+) \S+$", text, re.M)
    assert all((ROOT / source).exists() for source in sources), sources
    assert f"pip install ./contracts ./runtime ./services/{service}" in text
    default_port = SETTINGS[service].model_fields[f"{service}_port"].default
    assert f"WOK_{service.upper()}_PORT={default_port}" in text
    assert f"EXPOSE {default_port}" in text


def test_interpolation_follows_compose_rules() -> None:
    env = {"SET": "x", "EMPTY": ""}
    assert interpolate("${SET:-d}|${EMPTY:-d}|${EMPTY-d}|${UNSET-d}|$$SET", env) == "x|d||d|$SET"
    with pytest.raises(MissingVariable, match="EMPTY: needed"):
        interpolate("${EMPTY:?needed}", env)
    assert interpolate("${EMPTY?needed}", env) == ""
