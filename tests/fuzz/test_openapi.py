"""schemathesis against every service's OpenAPI document, on the services as they run.

Every operation of every service is called with generated requests, in three passes: valid
requests on the world's real ids and keys (so they reach storage and the events they cause),
invalid requests on the same ids, and valid requests on unknown ids. Each response must not
be a 5xx and must conform to the service's OpenAPI document (status code, content type,
body schema). The examples are derandomized, so a run is reproducible; a failure names the
operation, the checks that failed and a curl command to repeat it.

A service is fuzzed when it is part of the stack (`wok_cli.settings.SERVICE_NAMES`); which
key each operation takes and which ids it gets come from `FUZZ_TARGETS`, with a default for
a service not listed there (the federal key, ids by parameter name).
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import hypothesis
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.e2e.helpers import read_topic
from tests.fuzz.conftest import AGS_B, FuzzWorld
from wok_cli.devstack import DEAD_LETTER_CONSUMERS
from wok_cli.settings import SERVICE_NAMES

# Examples per operation in each pass; the whole folder stays around a minute and a half.
VALID_EXAMPLES = 12
INVALID_EXAMPLES = 12
UNKNOWN_ID_EXAMPLES = 4
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]

Operation = tuple[str, str]
"""(method, path template), e.g. ("POST", "/v1/municipalities")."""


@dataclass(frozen=True)
class Target:
    """How to reach past authentication on one service."""

    key: Callable[[Operation], str | None] = lambda _: "federal"
    """The role whose key an operation gets (see `FuzzWorld.keys`); None sends no key."""
    ids: Callable[[Operation, FuzzWorld], dict[str, str]] = lambda _, world: world.ids
    """Known path parameters (by name) for the passes on real ids."""
    query: Callable[[Operation, FuzzWorld], dict[str, str]] = lambda _, world: {}
    """Fixed query parameters for the passes on real ids (e.g. a signed link's)."""


def _registration_key(operation: Operation) -> str | None:
    method, path = operation
    if path.startswith("/internal/"):
        return "service"
    if path in ("/v1/municipalities", "/v1/municipalities/{ags}/keys"):
        return "admin" if method != "GET" else None
    return "municipality"


def _registration_ids(operation: Operation, world: FuzzWorld) -> dict[str, str]:
    _, path = operation
    if path == "/v1/municipalities/{ags}/keys":
        return {**world.ids, "ags": AGS_B}  # rotate and revoke B's key, never A's
    if path.endswith("/cancel") and "dialogue-events" in path:
        return {**world.ids, "dialogue_event_id": world.spare_event_id}
    return world.ids


def _registration_query(operation: Operation, world: FuzzWorld) -> dict[str, str]:
    _, path = operation
    if path == "/v1/registrations/{registration_id}/cancel":
        return world.cancel_link.query
    if path == "/v1/registrations/{registration_id}/erasure":
        return world.erasure_link.query
    return {}


FUZZ_TARGETS: dict[str, Target] = {
    "registration": Target(key=_registration_key, ids=_registration_ids, query=_registration_query),
    "assessment": Target(key=lambda _: "municipality"),
    "notification": Target(key=lambda _: "service"),
    "reporting": Target(key=lambda _: "federal"),
    "exchange": Target(key=lambda _: "municipality"),
}


@dataclass
class Tally:
    """What the fuzzer did on one service."""

    operations: int = 0
    examples: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    failures: dict[str, str] = field(default_factory=dict)
    """The first failure report per (operation, pass, checks that failed)."""

    def line(self, service: str, seconds: float) -> str:
        classes = Counter(f"{status // 100}xx" for status in self.statuses.elements())
        return (
            f"fuzz {service}: {self.operations} operations, {sum(self.examples.values())} "
            f"requests ({dict(self.examples)}), responses {dict(sorted(classes.items()))}, "
            f"{len(self.failures)} failures, {seconds:.1f} s"
        )


def _settings(examples: int) -> hypothesis.settings:
    return hypothesis.settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )


def _fuzz_pass(
    operation: Any,
    *,
    name: str,
    mode: GenerationMode,
    examples: int,
    headers: dict[str, str],
    session: requests.Session,
    base_url: str,
    tally: Tally,
    **fixed: Any,
) -> None:
    label = f"{operation.method.upper()} {operation.path} [{name}]"
    strategy = operation.as_strategy(generation_mode=mode, **fixed)

    @given(case=strategy)
    @_settings(examples)
    def run(case: schemathesis.Case) -> None:
        response = case.call(base_url=base_url, session=session, headers=headers, timeout=30)
        tally.examples[name] += 1
        tally.statuses[response.status_code] += 1
        try:
            case.validate_response(response, checks=CHECKS, headers=headers)
        except FailureGroup as group:
            kinds = ",".join(sorted({type(f).__name__ for f in group.exceptions}))
            tally.failures.setdefault(f"{label} {kinds} {response.status_code}", str(group))

    try:
        run()
    except hypothesis.errors.Unsatisfiable:
        pass  # e.g. no invalid request exists for an operation without parameters


@pytest.mark.timeout(600)  # the first one starts the stack; slow on a loaded machine
@pytest.mark.parametrize("service", SERVICE_NAMES)
def test_every_operation_answers_within_its_openapi_document(
    service: str, fuzz_world: FuzzWorld
) -> None:
    started = time.monotonic()
    target = FUZZ_TARGETS.get(service, Target())
    base_url = fuzz_world.stack.url(service)
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    tally = Tally()
    with requests.Session() as session:
        for result in schema.get_all_operations():
            operation = result.ok()
            key = (operation.method.upper(), operation.path)
            role = target.key(key)
            headers = {} if role is None else {"Authorization": f"Bearer {fuzz_world.keys[role]}"}
            parameters = {p.name for p in operation.path_parameters}
            known = {k: v for k, v in target.ids(key, fuzz_world).items() if k in parameters}
            query = target.query(key, fuzz_world)
            tally.operations += 1
            common: dict[str, Any] = {
                "headers": headers,
                "session": session,
                "base_url": base_url,
                "tally": tally,
            }
            _fuzz_pass(
                operation,
                name="valid",
                mode=GenerationMode.POSITIVE,
                examples=VALID_EXAMPLES,
                path_parameters=known,
                query=query or None,
                **common,
            )
            _fuzz_pass(
                operation,
                name="invalid",
                mode=GenerationMode.NEGATIVE,
                examples=INVALID_EXAMPLES,
                path_parameters=known,
                **common,
            )
            if parameters:
                _fuzz_pass(
                    operation,
                    name="unknown ids",
                    mode=GenerationMode.POSITIVE,
                    examples=UNKNOWN_ID_EXAMPLES,
                    **common,
                )
    print("\n" + tally.line(service, time.monotonic() - started))
    for where in tally.failures:
        print(f"  failed: {where}")
    assert tally.operations > 0
    assert not tally.failures, "\n\n".join(
        f"{where}\n{report}" for where, report in tally.failures.items()
    )


async def test_what_the_fuzzer_stored_was_consumed_without_an_error_or_a_dead_letter(
    fuzz_world: FuzzWorld,
) -> None:
    """Runs after the services were fuzzed: the events the fuzzed requests caused (odd titles,
    places, names in every script) were consumed by every service without a dead letter, and
    no process of the stack logged an error."""
    stack = fuzz_world.stack
    prefix = stack.settings.topic_prefix
    dead_letters = {
        consumer: await read_topic(stack.kafka_bootstrap, f"{prefix}dead-letter.{consumer}.v1")
        for consumer in DEAD_LETTER_CONSUMERS
    }
    errors = [
        f"{path.name}: {line.strip()[:300]}"
        for path in sorted(stack.logs_dir.glob("*.log"))
        for line in path.read_text(errors="replace").splitlines()
        if re.search(r'"level":\s*"(error|critical)"', line)
    ]
    print(
        f"\nafter fuzzing: {sum(map(len, dead_letters.values()))} dead letters, "
        f"{len(errors)} error lines in the logs of {', '.join(stack.names)}"
    )
    assert not any(dead_letters.values()), {
        consumer: [dict(record.headers).get("wok-dlq-reason") for record in records]
        for consumer, records in dead_letters.items()
    }
    assert not errors, "\n".join(errors[:20])
