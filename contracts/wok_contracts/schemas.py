"""Export the JSON Schema of every contract, and judge whether a change to one is compatible.

Compatible inside a `.v1` type means additive and optional: every field a consumer may
rely on keeps its name and type, and no new field becomes required.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from wok_contracts.envelope import Envelope
from wok_contracts.registry import REGISTRY

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"


def current_schemas() -> dict[str, dict[str, Any]]:
    """Schema of each event type's whole envelope, by type."""
    return {
        event_type: Envelope[model].model_json_schema()  # type: ignore[valid-type]
        for event_type, model in sorted(REGISTRY.items())
    }


def schema_path(event_type: str, directory: Path = SCHEMA_DIR) -> Path:
    return directory / f"{event_type}.json"


class IncompatibleSchemaChange(Exception):
    pass


def export(directory: Path = SCHEMA_DIR) -> list[Path]:
    """Write the schemas; refuses to overwrite a committed schema with an incompatible one.

    The committed files are the baseline consumers were built against, so a breaking change
    cannot be exported over them: it needs a new `.v2` type beside the old one.
    """
    directory.mkdir(parents=True, exist_ok=True)
    schemas = current_schemas()
    problems = []
    for event_type, schema in schemas.items():
        path = schema_path(event_type, directory)
        if path.exists():
            problems += [
                f"{event_type}: {problem}"
                for problem in incompatibilities(json.loads(path.read_text()), schema)
            ]
    if problems:
        raise IncompatibleSchemaChange(
            "incompatible change to a published contract (make a new .v2 type instead):\n"
            + "\n".join(problems)
        )
    written = []
    for event_type, schema in schemas.items():
        path = schema_path(event_type, directory)
        path.write_text(json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
        written.append(path)
    return written


_UPPER_BOUNDS = ("maxLength", "maximum", "exclusiveMaximum", "maxItems")
_LOWER_BOUNDS = ("minLength", "minimum", "exclusiveMinimum", "minItems")


def _loosened(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Bounds a consumer validated against that the new schema no longer keeps."""
    loosened = []
    for key in _UPPER_BOUNDS:
        if key in old and (key not in new or new[key] > old[key]):
            loosened.append(f"{key} loosened from {old[key]!r} to {new.get(key)!r}")
    for key in _LOWER_BOUNDS:
        if key in old and (key not in new or new[key] < old[key]):
            loosened.append(f"{key} loosened from {old[key]!r} to {new.get(key)!r}")
    return loosened


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        return _resolve(root["$defs"][ref.removeprefix("#/$defs/")], root)
    return schema


def _shape(schema: dict[str, Any], root: dict[str, Any]) -> Any:
    """What a consumer relies on: types, formats, enums and nested shapes, not descriptions."""
    schema = _resolve(schema, root)
    shape: dict[str, Any] = {}
    for key in ("type", "format", "enum", "const", "pattern", *_UPPER_BOUNDS, *_LOWER_BOUNDS):
        if key in schema:
            shape[key] = schema[key]
    if "anyOf" in schema:
        shape["anyOf"] = [_shape(option, root) for option in schema["anyOf"]]
    if "items" in schema:
        shape["items"] = _shape(schema["items"], root)
    if isinstance(schema.get("additionalProperties"), dict):
        shape["additionalProperties"] = _shape(schema["additionalProperties"], root)
    if "properties" in schema:
        shape["properties"] = {
            name: _shape(child, root) for name, child in schema["properties"].items()
        }
        shape["required"] = sorted(schema.get("required", []))
    return shape


def incompatibilities(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Reasons why `new` would break a consumer written against `old`; empty if compatible."""
    return _compare(_shape(old, old), _shape(new, new), path="")


def _compare(old: Any, new: Any, *, path: str) -> list[str]:
    problems: list[str] = []
    where = path or "(envelope)"
    if not isinstance(old, dict) or not isinstance(new, dict):
        return [] if old == new else [f"{where}: changed"]
    for key in ("type", "format", "const", "pattern"):
        if old.get(key) != new.get(key):
            problems.append(f"{where}: {key} changed from {old.get(key)!r} to {new.get(key)!r}")
    problems += [f"{where}: {problem}" for problem in _loosened(old, new)]
    if "enum" in old and not set(old["enum"]) <= set(new["enum"] if "enum" in new else old["enum"]):
        problems.append(f"{where}: enum values removed")
    if "anyOf" in old and old.get("anyOf") != new.get("anyOf"):
        problems.append(f"{where}: union changed")
    for key in ("items", "additionalProperties"):
        if key in old:
            problems += _compare(old[key], new.get(key), path=f"{path}[{key}]")
    old_properties = old.get("properties", {})
    new_properties = new.get("properties", {})
    for name, child in old_properties.items():
        child_path = f"{path}.{name}" if path else name
        if name not in new_properties:
            problems.append(f"{child_path}: removed")
        else:
            problems += _compare(child, new_properties[name], path=child_path)
    newly_required = set(new.get("required", [])) - set(old.get("required", []))
    for name in sorted(newly_required):
        problems.append(f"{path + '.' if path else ''}{name}: became required")
    return problems


def main() -> None:
    try:
        written = export(Path(sys.argv[1]) if len(sys.argv) > 1 else SCHEMA_DIR)
    except IncompatibleSchemaChange as error:
        sys.exit(str(error))
    for path in written:
        print(path)


if __name__ == "__main__":
    main()
