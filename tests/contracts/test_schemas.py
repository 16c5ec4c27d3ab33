"""Exported JSON Schemas are committed, current, and only ever change compatibly inside a `.v1`.

A contract on a topic never carries personal data (DESIGN.md section 5).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar

import pytest
from pydantic import Field

from wok_contracts import REGISTRY, Envelope, EventData
from wok_contracts.schemas import SCHEMA_DIR, current_schemas, export, incompatibilities

HOW_TO_REFRESH = "run `python -m wok_contracts.schemas` and commit contracts/schemas"


def committed_schemas() -> dict[str, dict[str, Any]]:
    return {
        path.name.removesuffix(".json"): json.loads(path.read_text())
        for path in sorted(SCHEMA_DIR.glob("*.json"))
    }


def test_every_contract_has_a_committed_schema_and_no_other_is_left() -> None:
    committed, current = set(committed_schemas()), set(current_schemas())

    assert committed == current, (
        f"missing: {sorted(current - committed)}, stale: {sorted(committed - current)}; "
        + HOW_TO_REFRESH
    )


@pytest.mark.parametrize("event_type", sorted(REGISTRY))
def test_the_committed_schema_is_what_the_model_exports(event_type: str) -> None:
    committed = committed_schemas().get(event_type)

    assert committed == current_schemas()[event_type], (
        f"contracts/schemas/{event_type}.json is stale; " + HOW_TO_REFRESH
    )


@pytest.mark.parametrize("event_type", sorted(committed_schemas()))
def test_the_current_model_is_compatible_with_the_committed_schema(event_type: str) -> None:
    current = current_schemas().get(event_type)
    assert current is not None, (
        f"{event_type} was removed; a .v1 type stays until its consumers moved to the next version"
    )

    assert incompatibilities(committed_schemas()[event_type], current) == [], (
        "inside a .v1 type only additive, optional fields are allowed; "
        "publish a breaking change as a new .v2 type"
    )


def test_export_writes_one_file_per_contract(tmp_path: Path) -> None:
    written = export(tmp_path)

    assert sorted(path.name for path in written) == sorted(f"{t}.json" for t in REGISTRY)
    for path in written:
        assert json.loads(path.read_text()) == current_schemas()[path.name.removesuffix(".json")]


# The incompatibility judge itself, on small contracts that change in one way each.


class Colour(StrEnum):
    RED = "red"
    GREEN = "green"


class FewerColours(StrEnum):
    RED = "red"


class MoreColours(StrEnum):
    RED = "red"
    GREEN = "green"
    BLUE = "blue"


class Base(EventData):
    event_type: ClassVar[str] = "test.thing.happened.v1"

    thing_id: str
    count: int = Field(ge=0)
    colour: Colour
    note: str = ""
    tags: list[str] = Field(default_factory=list)


class WithoutCount(EventData):
    thing_id: str
    colour: Colour
    note: str = ""
    tags: list[str] = Field(default_factory=list)


class CountAsText(EventData):
    thing_id: str
    count: str
    colour: Colour
    note: str = ""
    tags: list[str] = Field(default_factory=list)


class NoteRequired(EventData):
    thing_id: str
    count: int = Field(ge=0)
    colour: Colour
    note: str
    tags: list[str] = Field(default_factory=list)


class NewRequiredField(EventData):
    thing_id: str
    count: int = Field(ge=0)
    colour: Colour
    note: str = ""
    tags: list[str] = Field(default_factory=list)
    owner_id: str


class ColourRemoved(EventData):
    thing_id: str
    count: int = Field(ge=0)
    colour: FewerColours
    note: str = ""
    tags: list[str] = Field(default_factory=list)


class TagsAsNumbers(EventData):
    thing_id: str
    count: int = Field(ge=0)
    colour: Colour
    note: str = ""
    tags: list[int] = Field(default_factory=list)


class NewOptionalField(EventData):
    thing_id: str
    count: int = Field(ge=0, description="Now documented")
    colour: Colour
    note: str = ""
    tags: list[str] = Field(default_factory=list)
    place: str | None = None


class ColourAdded(EventData):
    thing_id: str
    count: int = Field(ge=0)
    colour: MoreColours
    note: str = ""
    tags: list[str] = Field(default_factory=list)


def envelope_schema(model: type[EventData]) -> dict[str, Any]:
    return Envelope[model].model_json_schema()  # type: ignore[valid-type]


@pytest.mark.parametrize(
    ("changed", "expected"),
    [
        (WithoutCount, "data.count: removed"),
        (CountAsText, "data.count: type changed from 'integer' to 'string'"),
        (NoteRequired, "data.note: became required"),
        (NewRequiredField, "data.owner_id: became required"),
        (ColourRemoved, "data.colour: enum values removed"),
        (TagsAsNumbers, "data.tags[items]: type changed from 'string' to 'integer'"),
    ],
    ids=[
        "field-removed",
        "type-changed",
        "made-required",
        "new-required",
        "enum-value-removed",
        "item-type-changed",
    ],
)
def test_a_breaking_change_is_reported(changed: type[EventData], expected: str) -> None:
    problems = incompatibilities(envelope_schema(Base), envelope_schema(changed))

    assert expected in problems


@pytest.mark.parametrize(
    "changed", [Base, NewOptionalField, ColourAdded], ids=["same", "optional-field", "enum-value"]
)
def test_an_additive_change_is_compatible(changed: type[EventData]) -> None:
    assert incompatibilities(envelope_schema(Base), envelope_schema(changed)) == []


def test_a_field_removed_from_the_envelope_itself_is_reported() -> None:
    old = envelope_schema(Base)
    new = json.loads(json.dumps(old))
    del new["properties"]["correlationid"]

    assert incompatibilities(old, new) == ["correlationid: removed"]


# Privacy: no contract on a topic names a person or how to reach one.

PERSONAL_DATA = re.compile(
    r"e_?mail|(first|last|full|given|family|sur|nick|user)_?name|phone|mobile|birth",
    re.IGNORECASE,
)


def property_names(schema: Any, where: str = "") -> Iterator[tuple[str, str]]:
    """(path, name) of every property anywhere in a schema, nested models under `$defs` too."""
    if isinstance(schema, dict):
        for key, child in schema.items():
            if key == "properties" and isinstance(child, dict):
                for name, subschema in child.items():
                    path = f"{where}.{name}".lstrip(".")
                    yield path, name
                    yield from property_names(subschema, path)
            elif key == "$defs" and isinstance(child, dict):
                for model, subschema in child.items():
                    yield from property_names(subschema, model)
            else:
                yield from property_names(child, where)
    elif isinstance(schema, list):
        for child in schema:
            yield from property_names(child, where)


@pytest.mark.parametrize("event_type", sorted(REGISTRY))
def test_no_contract_has_a_field_that_looks_like_personal_data(event_type: str) -> None:
    for schema in (current_schemas()[event_type], committed_schemas()[event_type]):
        names = list(property_names(schema))
        assert names, "the scan found no property names at all"
        suspicious = [path for path, name in names if PERSONAL_DATA.search(name)]
        assert suspicious == [], f"{event_type} carries personal data: {suspicious}"


@pytest.mark.parametrize(
    "name", ["email", "e_mail", "contactEmail", "first_name", "lastname", "full_name", "phone"]
)
def test_the_personal_data_scan_would_notice(name: str) -> None:
    schema = {"$defs": {"Person": {"properties": {name: {"type": "string"}}}}}

    assert [found for _, found in property_names(schema) if PERSONAL_DATA.search(found)] == [name]


def test_export_refuses_to_overwrite_a_published_schema_with_a_breaking_change(
    tmp_path: Path,
) -> None:
    from wok_contracts.schemas import IncompatibleSchemaChange

    export(tmp_path)
    published = tmp_path / "registration.participant.registered.v1.json"
    schema = json.loads(published.read_text())
    schema["$defs"]["ParticipantRegistered"]["properties"]["cohort"] = {"type": "string"}
    schema["$defs"]["ParticipantRegistered"]["required"].append("cohort")
    published.write_text(json.dumps(schema))

    with pytest.raises(IncompatibleSchemaChange, match="cohort: removed"):
        export(tmp_path)
    assert "cohort" in published.read_text(), "the published baseline stays untouched"


def test_a_loosened_bound_is_reported() -> None:
    old = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 1}}}
    new = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 0}}}
    assert incompatibilities(old, new) == ["n: minimum loosened from 1 to 0"]
