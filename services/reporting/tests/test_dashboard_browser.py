"""The dashboard in headless Chromium: the federal key entered in the page, the charts showing
what was played, a live update after a new event, and a screenshot."""

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import uvicorn
from faststream.kafka import TestKafkaBroker
from playwright.sync_api import Page, sync_playwright

from services.reporting.tests.conftest import Events, ReportingService
from services.reporting.tests.test_assessment_projections import scored
from services.reporting.tests.test_assessment_service import assessment_story
from wok_contracts import RegistrationStatus
from wok_contracts.topics import ASSESSMENT_EVENTS, REGISTRATION_EVENTS

TRIER = "07211000"
DAY_1 = datetime(2026, 11, 3, 9, 0, tzinfo=UTC)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def served(service: ReportingService) -> Iterator[str]:
    """The reporting app over real HTTP (its consumers stay off: events are played into it
    through the test broker), for the browser to load."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            service.app, host="127.0.0.1", port=port, lifespan="off", log_level="warning"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "the reporting app did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def registrations(events: type[Events]) -> list:
    """Fifteen registrations in Kaiserslautern over two days (8, 7), five waitlisted: no
    cell below 5, so every figure is published."""
    dialogue = events.dialogue_event_scheduled(events.KAISERSLAUTERN)
    played = [(REGISTRATION_EVENTS, events.envelope(dialogue, time=DAY_1))]
    for n in range(15):
        data = events.participant_registered(
            dialogue_event_id=dialogue.dialogue_event_id,
            status=RegistrationStatus.WAITLISTED if n >= 10 else RegistrationStatus.CONFIRMED,
        )
        moment = DAY_1 + timedelta(days=n // 8, minutes=n)
        played.append((REGISTRATION_EVENTS, events.envelope(data, time=moment)))
    return played


async def play(service: ReportingService, played: list) -> None:
    async with TestKafkaBroker(service.runtime.broker) as broker:
        for topic, envelope in played:
            await broker.publish(
                envelope.to_json_bytes(), topic=topic, key=envelope.data.ags.encode()
            )
        await service.publisher.publish_changes()


def text_of(page: Page, selector: str) -> str:
    return page.locator(selector).text_content() or ""


def test_the_dashboard_shows_the_played_program_and_follows_new_events(
    chromium_executable: str,
    chromium_args: tuple[str, ...],
    service: ReportingService,
    events: type[Events],
    served: str,
    tmp_path: Path,
) -> None:
    asyncio.run(play(service, [*assessment_story(events), *registrations(events)]))

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium_executable, args=list(chromium_args)
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"{served}/dashboard")
            page.fill("#key", "not-the-key")
            page.click("button[type=submit]")
            page.wait_for_function(
                "document.getElementById('status').textContent.includes('abgelehnt')"
            )
            assert page.locator("#registration-funnel text.value").count() == 0

            page.fill("#key", service.federal_key)
            page.click("button[type=submit]")
            scored_step = "#self-check-funnel text[data-step=scored]"
            page.wait_for_selector(scored_step, timeout=15_000)

            assert text_of(page, "#registration-funnel text[data-step=registered]") == "15"
            assert text_of(page, "#registration-funnel text[data-step=confirmed]") == "10"
            assert text_of(page, "#self-check-funnel text[data-step=started]") == "4"
            assert text_of(page, "#self-check-funnel text[data-step=submitted]") == "3"
            assert text_of(page, scored_step) == "3"
            # Fields 1 and 6 were scored: a box each, a dot per municipality and field.
            assert page.locator("#field-scores rect.box").count() == 2
            assert page.locator("#field-scores circle.municipality").count() == 6
            assert page.locator("#registrations-over-time rect.bar").count() == 2
            assert page.locator("#lands tbody tr").count() == 2
            lands = page.locator("#lands tbody tr[data-land='07'] td").all_inner_texts()
            assert lands[:3] == ["Rheinland-Pfalz", "2", "15"]

            # A fourth municipality's self-check is scored: the page follows without reload.
            new = [(ASSESSMENT_EVENTS, events.envelope(scored(TRIER, {6: 20.0}), time=DAY_1))]
            # Playwright's sync API holds this thread's event loop: play from another one.
            with ThreadPoolExecutor(max_workers=1) as apart:
                apart.submit(asyncio.run, play(service, new)).result(timeout=30)
            page.wait_for_function(
                "document.querySelector('#self-check-funnel text[data-step=scored]')"
                ".textContent === '4'",
                timeout=15_000,
            )
            assert page.locator("#field-scores circle.municipality").count() == 7

            screenshot = tmp_path / "dashboard.png"
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()

    image = screenshot.read_bytes()
    assert image[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(image[16:20], "big"), int.from_bytes(image[20:24], "big")
    assert (width, height) >= (1280, 600)
    assert len(image) > 20_000  # charts and text, not a blank page
