"""`wok docs`: the OpenAPI document of every service and one AsyncAPI document of the platform.

Everything is derived from the code, without I/O: each service's app is built with default
settings (a composition root connects only when started) for its OpenAPI document and its
Kafka subscribers; the messages are the contracts' CloudEvents envelopes as JSON Schemas.
tests/cli/test_docs.py fails when the committed documents are stale.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from importlib import import_module
from pathlib import Path
from typing import Annotated, Any

import typer
from fastapi import FastAPI
from pydantic.json_schema import models_json_schema
from rich.console import Console

from wok_cli.settings import SERVICE_NAMES
from wok_contracts.envelope import Envelope
from wok_contracts.registry import REGISTRY
from wok_contracts.topics import (
    ASSESSMENT_EVENTS,
    EXCHANGE_ACTIVITY,
    EXCHANGE_AGGREGATES,
    EXCHANGE_PEERS,
    NOTIFICATION_EVENTS,
    REGISTRATION_EVENTS,
    dead_letter_topic,
)

DEFAULT_OUTPUT = Path("docs/api")
ASYNCAPI_FILE = "asyncapi.json"
CLOUDEVENTS_CONTENT_TYPE = "application/cloudevents+json"
DEAD_LETTER_HEADERS = {
    "wok-dlq-reason": "Why the message was not processed (the field that is wrong, or the error)",
    "wok-dlq-consumer": "The consumer group that gave up on it",
    "wok-dlq-topic": "The topic it came from (without the deployment's prefix)",
    "wok-dlq-partition": "Its partition there",
    "wok-dlq-offset": "Its offset there",
    "wok-dlq-failed-at": "When it was dead-lettered (ISO 8601, UTC)",
}


def topic_of(event_type: str) -> str:
    """The topic an event type is published on (DESIGN.md section 4)."""
    if event_type.startswith("reporting.aggregate."):
        return EXCHANGE_AGGREGATES
    if event_type.startswith("reporting."):
        return EXCHANGE_ACTIVITY
    return {
        "registration": REGISTRATION_EVENTS,
        "assessment": ASSESSMENT_EVENTS,
        "notification": NOTIFICATION_EVENTS,
        "exchange": EXCHANGE_PEERS,
    }[event_type.split(".", 1)[0]]


def producer_of(topic: str) -> str:
    if topic == EXCHANGE_PEERS:
        return "exchange"
    return "reporting" if topic.startswith("exchange.") else topic.split(".", 1)[0]


def service_app(service: str) -> FastAPI:
    """`build_app(<Service>Settings())` of one service; builds objects only, no I/O."""
    app_module = import_module(f"wok_{service}.app")
    settings_module = import_module(f"wok_{service}.settings")
    settings_class = getattr(settings_module, f"{service.capitalize()}Settings")
    build_app: Callable[..., FastAPI] = app_module.build_app
    return build_app(settings_class())


def openapi_documents() -> dict[str, dict[str, Any]]:
    return {service: service_app(service).openapi() for service in SERVICE_NAMES}


def subscriptions() -> dict[str, list[str]]:
    """Consumer group -> the topics it reads, from the services' real subscribers."""
    found: dict[str, list[str]] = {}
    for service in SERVICE_NAMES:
        runtime = service_app(service).state.runtime
        for subscriber in runtime.broker.subscribers:
            found.setdefault(subscriber.group_id, []).extend(subscriber.topic_names)
    return {group: sorted(set(topics)) for group, topics in sorted(found.items())}


def _message_name(event_type: str) -> str:
    return event_type.replace(".", "_")


def asyncapi_document() -> dict[str, Any]:
    """AsyncAPI 3.0: channels = topics, messages = the contracts' envelopes."""
    models = sorted(REGISTRY.items())
    references, top = models_json_schema(
        [(Envelope[model], "validation") for _, model in models],  # type: ignore[valid-type]
        ref_template="#/components/schemas/{model}",
    )
    schemas: dict[str, Any] = dict(top.get("$defs", {}))
    messages: dict[str, Any] = {}
    channel_messages: dict[str, dict[str, Any]] = {}
    by_model = {key[0]: value for key, value in references.items()}
    for event_type, model in models:
        name = _message_name(event_type)
        messages[name] = {
            "name": event_type,
            "title": model.__name__,
            "summary": (model.__doc__ or "").strip().splitlines()[0] if model.__doc__ else "",
            "contentType": CLOUDEVENTS_CONTENT_TYPE,
            "headers": {
                "type": "object",
                "properties": {"content-type": {"type": "string"}},
            },
            "payload": by_model[Envelope[model]],  # type: ignore[valid-type]
            "bindings": {"kafka": {"key": {"type": "string", "description": _key(event_type)}}},
        }
        channel_messages.setdefault(topic_of(event_type), {})[name] = {
            "$ref": f"#/components/messages/{name}"
        }
    messages["DeadLetter"] = {
        "name": "dead-letter",
        "title": "Dead letter",
        "summary": "A message a consumer could not process: the original bytes, key and "
        "headers, and why. `wok dlq redrive` publishes it to its original topic again.",
        "headers": {
            "type": "object",
            "required": sorted(DEAD_LETTER_HEADERS),
            "properties": {
                name: {"type": "string", "description": description}
                for name, description in DEAD_LETTER_HEADERS.items()
            },
        },
        "payload": {"description": "The original message's bytes, unchanged"},
    }
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for topic, topic_messages in sorted(channel_messages.items()):
        channel = _channel_id(topic)
        channels[channel] = {
            "address": topic,
            "description": _channel_description(topic),
            "messages": topic_messages,
            "bindings": {"kafka": {"topic": topic}},
        }
        operations[f"{producer_of(topic)}_sends_{channel}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{channel}"},
            "summary": f"{producer_of(topic)} publishes (transactional outbox, key = AGS)",
        }
    for group, topics in subscriptions().items():
        for topic in topics:
            channel = _channel_id(topic)
            if channel not in channels:
                continue
            operations[f"{group}_receives_{channel}"] = {
                "action": "receive",
                "channel": {"$ref": f"#/channels/{channel}"},
                "summary": f"consumer group {group}: at-least-once, idempotent",
                "bindings": {"kafka": {"groupId": {"type": "string", "enum": [group]}}},
            }
        dead_letters = dead_letter_topic(group)
        dead_channel = _channel_id(dead_letters)
        channels[dead_channel] = {
            "address": dead_letters,
            "description": f"Messages consumer group {group} could not process",
            "messages": {"DeadLetter": {"$ref": "#/components/messages/DeadLetter"}},
            "bindings": {"kafka": {"topic": dead_letters, "partitions": 1}},
        }
        operations[f"{group}_dead_letters"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{dead_channel}"},
            "summary": f"{group} dead-letters what it cannot process, with the reason",
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Weltoffene Kommune: events",
            "version": "1.0.0",
            "description": "Every message is a CloudEvents 1.0 envelope (structured JSON) "
            "whose `data` is the contract of its `type`. Topic names may carry a prefix per "
            "deployment (WOK_TOPIC_PREFIX). Key = the municipality's AGS, except on "
            "exchange.aggregates.v1 (compacted), keyed by scope.",
        },
        "defaultContentType": CLOUDEVENTS_CONTENT_TYPE,
        "servers": {
            "embedded": {
                "host": "127.0.0.1:9092",
                "protocol": "kafka",
                "description": "`wok dev`",
            },
            "compose": {
                "host": "kafka:9092",
                "protocol": "kafka",
                "description": "docker-compose.yml",
            },
        },
        "channels": channels,
        "operations": dict(sorted(operations.items())),
        "components": {"messages": messages, "schemas": dict(sorted(schemas.items()))},
    }


def _channel_id(topic: str) -> str:
    return topic.replace(".", "_").replace("-", "_")


def _key(event_type: str) -> str:
    if topic_of(event_type) == EXCHANGE_AGGREGATES:
        return "The scope: `program` or `municipality:<AGS>`"
    return "The municipality's AGS, so one municipality's events stay in order"


def _channel_description(topic: str) -> str:
    return {
        REGISTRATION_EVENTS: "Municipalities, keys, dialogue events, registrations "
        "(kept for good: reporting rebuilds from it; no names or e-mail addresses)",
        ASSESSMENT_EVENTS: "Self-checks, workshop perspectives, measures",
        NOTIFICATION_EVENTS: "What was sent (no addresses, no bodies)",
        EXCHANGE_ACTIVITY: "One digest per municipality activity, no personal data",
        EXCHANGE_AGGREGATES: "Compacted snapshots keyed by scope, disclosure-controlled",
        EXCHANGE_PEERS: "Peer suggestions and peers' activity, one event per recipient "
        "municipality (key = its AGS), no personal data",
    }.get(topic, topic)


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False, sort_keys=False) + "\n"


def generate() -> dict[str, str]:
    """File name -> content of every document."""
    files = {
        f"{service}.openapi.json": render(document)
        for service, document in openapi_documents().items()
    }
    files[ASYNCAPI_FILE] = render(asyncapi_document())
    return files


def docs(
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Folder for the documents", file_okay=False)
    ] = DEFAULT_OUTPUT,
) -> None:
    """Write the OpenAPI document of every service and the platform's AsyncAPI document."""
    console = Console()
    output.mkdir(parents=True, exist_ok=True)
    for name, content in generate().items():
        path = output / name
        changed = not path.exists() or path.read_text() != content
        path.write_text(content)
        console.print(f"{'written' if changed else 'unchanged'}: {path}")
