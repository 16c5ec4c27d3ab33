"""Decoding raw bytes into a typed envelope, with a specific reason when that fails."""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import ValidationError

from wok_contracts.envelope import Envelope, EventData
from wok_contracts.events import EVENT_TYPES

REGISTRY: dict[str, type[EventData]] = {model.event_type: model for model in EVENT_TYPES}
# `Envelope[model]` per event type, made on first use: pydantic looks a parametrized
# generic up in its cache on every subscript, which cost as much as validating.
_ENVELOPES: dict[str, type[Envelope[Any]]] = {}


def envelope_type(event_type: str) -> type[Envelope[Any]] | None:
    """The envelope model of a registered event type (None if the type is unknown)."""
    found = _ENVELOPES.get(event_type)
    if found is None:
        model = REGISTRY.get(event_type)
        if model is None:
            return None
        found = _ENVELOPES[event_type] = Envelope[model]  # type: ignore[valid-type]
    return found


class ContractError(ValueError):
    """A message that cannot be accepted; `reason` says why, for the dead-letter topic."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        location = ".".join(str(part) for part in item["loc"]) or "(root)"
        parts.append(f"{location}: {item['msg']}")
    return "; ".join(parts)


# The envelope's type as it usually stands in the raw bytes (a guess, checked afterwards).
_TYPE = re.compile(rb'"type"\s*:\s*"([^"\\]{1,200})"')


def decode_envelope(raw: bytes | None) -> Envelope[Any]:
    """Parse a structured-mode CloudEvent and validate its `data` against the contract.

    Fast for the common case: the type is guessed from the raw bytes and the envelope
    validated straight from JSON (pydantic's parser); when that fails, or the guess was not
    the envelope's type, the careful path decides and gives the reason.
    """
    if raw:
        found = _TYPE.search(raw)
        guessed = None if found is None else found.group(1).decode()
        model = None if guessed is None else envelope_type(guessed)
        if model is not None:
            try:
                envelope: Envelope[Any] = model.model_validate_json(raw)
            except ValidationError:
                pass  # the careful path below says why
            else:
                if envelope.type == guessed:
                    return envelope
    return decode_carefully(raw)


def decode_carefully(raw: bytes | None) -> Envelope[Any]:
    """`decode_envelope` without the fast path: parse, find the contract, validate."""
    if not raw:
        raise ContractError("empty message")
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ContractError(f"not JSON: {error}") from error
    if not isinstance(document, dict):
        raise ContractError("not a CloudEvents envelope: expected a JSON object")
    event_type = document.get("type")
    if not isinstance(event_type, str):
        raise ContractError("not a CloudEvents envelope: missing 'type'")
    model = envelope_type(event_type)
    if model is None:
        raise ContractError(f"unknown event type {event_type!r}")
    try:
        return model.model_validate(document)
    except ValidationError as error:
        raise ContractError(f"invalid {event_type}: {_describe(error)}") from error
