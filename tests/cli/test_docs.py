"""`wok docs`: the committed API documents are what the code generates, and they hold."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from openapi_spec_validator import validate as validate_openapi
from referencing import Registry, Resource
from typer.testing import CliRunner

from tests.contracts.test_envelope import sample_events
from wok_cli.commands.docs import ASYNCAPI_FILE, generate, topic_of
from wok_cli.main import app
from wok_cli.settings import SERVICE_NAMES
from wok_contracts import new_envelope
from wok_contracts.registry import REGISTRY

COMMITTED = Path(__file__).resolve().parents[2] / "docs" / "api"


@pytest.fixture(scope="module")
def generated() -> dict[str, str]:
    return generate()


def test_the_committed_documents_are_fresh(generated: dict[str, str]) -> None:
    committed = {path.name: path.read_text() for path in COMMITTED.glob("*.json")}
    stale = sorted(name for name in generated if committed.get(name) != generated[name])
    assert not stale, f"run `wok docs` and commit docs/api (stale: {stale})"
    assert set(committed) == set(generated)


def test_wok_docs_writes_every_document(tmp_path: Path, generated: dict[str, str]) -> None:
    result = CliRunner().invoke(app, ["docs", "--output", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert {path.name for path in tmp_path.iterdir()} == set(generated)
    again = CliRunner().invoke(app, ["docs", "--output", str(tmp_path)])
    assert again.output.count("unchanged") == len(generated)


@pytest.mark.parametrize("service", SERVICE_NAMES)
def test_each_openapi_document_is_valid_and_has_the_operations_paths(
    service: str, generated: dict[str, str]
) -> None:
    document = json.loads(generated[f"{service}.openapi.json"])
    validate_openapi(document)
    assert {"/healthz", "/readyz", "/metrics"} <= set(document["paths"])


def asyncapi(generated: dict[str, str]) -> dict[str, Any]:
    return json.loads(generated[ASYNCAPI_FILE])


def references(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in references(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in references(value)]
    return []


def resolve(document: dict[str, Any], reference: str) -> Any:
    node: Any = document
    for part in reference.removeprefix("#/").split("/"):
        node = node[part]
    return node


def test_the_asyncapi_document_has_a_channel_per_topic_and_every_reference_resolves(
    generated: dict[str, str],
) -> None:
    document = asyncapi(generated)
    assert document["asyncapi"].startswith("3.")
    for reference in references(document):
        assert reference.startswith("#/"), reference
        resolve(document, reference)
    addresses = {channel["address"] for channel in document["channels"].values()}
    assert {"registration.events.v1", "exchange.aggregates.v1"} <= addresses
    assert {"dead-letter.reporting.v1", "dead-letter.notification.v1"} <= addresses
    for event_type in REGISTRY:
        channel = next(
            c for c in document["channels"].values() if c["address"] == topic_of(event_type)
        )
        assert any(
            resolve(document, message["$ref"])["name"] == event_type
            for message in channel["messages"].values()
        ), event_type
    for operation in document["operations"].values():
        assert resolve(document, operation["channel"]["$ref"])["address"] in addresses


def test_every_contract_sample_validates_against_its_asyncapi_message(
    generated: dict[str, str],
) -> None:
    document = asyncapi(generated)
    registry = Registry().with_resource("urn:asyncapi", Resource.opaque(document))
    messages = {m["name"]: m for m in document["components"]["messages"].values()}
    samples = sample_events()
    # one sample per contract is tests/contracts' rule; each must fit its AsyncAPI message
    assert samples and {sample.event_type for sample in samples} <= set(messages)
    for sample in samples:
        envelope = new_envelope(sample, source="/test", municipality="07312000")
        payload = messages[sample.event_type]["payload"]
        validator = jsonschema.Draft202012Validator(
            {"$ref": f"urn:asyncapi{payload['$ref']}"}, registry=registry
        )
        validator.validate(json.loads(envelope.to_json_bytes()))
        broken = json.loads(envelope.to_json_bytes()) | {"data": "not an object"}
        assert list(validator.iter_errors(broken)), sample.event_type
