"""The README's example of a municipal system scheduling over Kafka runs as printed."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import httpx

from tests.e2e.helpers import eventually, read_topic
from wok_cli.devstack import EmbeddedStack

README = Path(__file__).resolve().parents[2] / "README.md"


def kafka_example() -> str:
    section = README.read_text().split("## Municipal systems over Kafka", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match, "the README section has a Python example"
    return match.group(1)


def test_the_readme_example_schedules_a_dialogue_event(stack: EmbeddedStack) -> None:
    httpx.post(
        f"{stack.url('registration')}/v1/municipalities",
        json={"ags": "07312000", "name": "Kaiserslautern", "kind": "city"},
        headers={"Authorization": f"Bearer {stack.admin_key}"},
    )  # 201, or 409 when another test onboarded it already
    prefix = stack.settings.topic_prefix
    code = kafka_example()
    assert '"127.0.0.1:9092"' in code and "REGISTRATION_COMMANDS," in code
    # Only the addresses of this test's stack differ from the defaults the README assumes.
    code = code.replace('"127.0.0.1:9092"', repr(stack.kafka_bootstrap))
    code = code.replace("REGISTRATION_COMMANDS,", f"{prefix!r} + REGISTRATION_COMMANDS,")
    exec(compile(code, str(README), "exec"), {"__name__": "readme_example"})

    async def scheduled_titles() -> list[str]:
        records = await read_topic(stack.kafka_bootstrap, f"{prefix}registration.events.v1")
        titles = []
        for record in records:
            try:
                document = json.loads(record.value)
            except ValueError:
                continue
            if document.get("type") == "registration.dialogue_event.scheduled.v1":
                titles.append(document["data"]["title"])
        return titles

    titles = asyncio.run(
        eventually(
            scheduled_titles,
            lambda found: "Dialog: Ankommen in Kaiserslautern" in found,
            what="the dialogue event scheduled by the README example",
        )
    )
    assert "Dialog: Ankommen in Kaiserslautern" in titles
