"""The field report in headless Chromium: the real app served over HTTP on real storage
(nx-27017), a self-check, workshop ratings and measures played through the API, then the page
as a reader sees it, on screen and printed."""

from __future__ import annotations

import asyncio
import io
import re
import socket
import time
import unicodedata
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import httpx
import pytest
import uvicorn
from faststream.kafka import TestKafkaBroker
from PIL import Image
from playwright.async_api import Page, async_playwright
from pypdf import PdfReader

from services.assessment.tests.conftest import SERVICE_KEY
from wok_assessment.adapters.repository import MongoAssessmentRepository, MongoMunicipalityDirectory
from wok_assessment.app import build_app
from wok_assessment.domain.catalogue import Catalogue, load_catalogues
from wok_assessment.settings import AssessmentSettings
from wok_contracts import MunicipalityKeyIssued, MunicipalityRegistered, new_envelope
from wok_contracts.topics import REGISTRATION_EVENTS
from wok_runtime.consumer import InMemoryProcessedStore
from wok_runtime.mongo import mongo_client
from wok_runtime.municipal_keys import MongoKeyDirectory, hash_key
from wok_runtime.report_links import sign_report_link
from wok_runtime.service import ServiceRuntime

KAISERSLAUTERN = "07312000"
MAINZ = "07315000"
CATALOGUE: Catalogue = load_catalogues().current
MEASURE = "Offener Treffpunkt im Quartier"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Served:
    url: str
    keys: dict[str, str]


@pytest.fixture
async def served(mongodb_uri: str) -> AsyncIterator[Served]:
    """The assessment app on nx-27017 behind uvicorn; keys arrive as registration's events."""
    client = mongo_client(mongodb_uri)
    database = client[f"wok_assessment_report_{uuid.uuid4().hex[:12]}"]
    settings = AssessmentSettings(mongodb_uri=mongodb_uri, service_key=SERVICE_KEY)
    runtime = ServiceRuntime(name="assessment", settings=settings, database=database)
    repository = MongoAssessmentRepository(database)
    keys = MongoKeyDirectory(database)
    await repository.ensure_indexes()
    await keys.ensure_indexes()
    app = build_app(
        settings,
        runtime=runtime,
        directory=MongoMunicipalityDirectory(database),
        repository=repository,
        keys=keys,
        processed=InMemoryProcessedStore(),
    )
    municipal_keys: dict[str, str] = {}
    # the in-memory broker stands in for Kafka (the service's lifespan would dial a real one)
    async with TestKafkaBroker(runtime.broker) as broker:
        for ags, name in ((KAISERSLAUTERN, "Kaiserslautern"), (MAINZ, "Mainz")):
            key = f"key-{uuid.uuid4().hex}"
            for data in (
                MunicipalityRegistered(ags=ags, name=name, kind="city", land="07"),
                MunicipalityKeyIssued(ags=ags, key_id=f"id-{ags}", key_hash=hash_key(key)),
            ):
                envelope = new_envelope(data, source="/wok/registration", municipality=ags)
                await broker.publish(
                    envelope.to_json_bytes(), REGISTRATION_EVENTS, key=ags.encode()
                )
            municipal_keys[ags] = key
        port = free_port()
        server = uvicorn.Server(
            uvicorn.Config(
                app, host="127.0.0.1", port=port, lifespan="off", log_config=None, access_log=False
            )
        )
        serving = asyncio.create_task(server.serve())
        try:
            for _ in range(200):
                if server.started:
                    break
                await asyncio.sleep(0.05)
            assert server.started, "uvicorn did not start"
            yield Served(f"http://127.0.0.1:{port}", municipal_keys)
        finally:
            server.should_exit = True
            await serving
            await client.close()


def answers(number: int, value: str) -> dict[str, str]:
    return {question.id: value for question in CATALOGUE.field(number).questions}


async def play_the_program(served: Served) -> None:
    """Mainz and Kaiserslautern submit self-checks; Kaiserslautern runs a workshop and plans."""
    async with httpx.AsyncClient(base_url=served.url, timeout=30) as http:

        async def submit(ags: str, given: dict[str, str]) -> None:
            key = {"Authorization": f"Bearer {served.keys[ags]}"}
            draft = (await http.post(f"/v1/municipalities/{ags}/self-checks", headers=key)).json()
            changed = await http.put(
                f"/v1/self-checks/{draft['id']}/answers", json={"answers": given}, headers=key
            )
            assert changed.status_code == 200, changed.text
            submitted = await http.post(f"/v1/self-checks/{draft['id']}/submit", headers=key)
            assert submitted.status_code == 200, submitted.text

        await submit(MAINZ, answers(1, "partly") | answers(4, "fully") | answers(5, "planned"))
        await submit(
            KAISERSLAUTERN,
            answers(1, "fully")
            | answers(2, "planned")
            | answers(3, "partly")
            | answers(4, "partly")
            | answers(5, "partly")
            | answers(6, "not_in_place")
            | answers(7, "planned"),
        )
        own = {"Authorization": f"Bearer {served.keys[KAISERSLAUTERN]}"}
        workshop = [("civil_society", 40)] * 3 + [("administration", 80)] * 3 + [("business", 5)]
        for group, rating in workshop:
            recorded = await http.post(
                f"/v1/municipalities/{KAISERSLAUTERN}/perspectives",
                json={
                    "workshop": "2026-05 Auftakt",
                    "stakeholder_group": group,
                    "ratings": {"1": rating, "6": rating},
                },
                headers=own,
            )
            assert recorded.status_code == 201, recorded.text
        planned = await http.post(
            f"/v1/municipalities/{KAISERSLAUTERN}/measures",
            json={
                "field": 6,
                "title": MEASURE,
                "owner_role": "Integrationsbüro",
                "starts_on": "2026-06-01",
                "due_on": "2026-12-31",
            },
            headers=own,
        )
        assert planned.status_code == 201, planned.text


RGB = tuple[int, int, int]


def colours_of(image: Image.Image) -> list[tuple[int, RGB]]:
    """(pixel count, colour) for every distinct colour of the image."""
    return cast(list[tuple[int, RGB]], image.convert("RGB").getcolors(maxcolors=1 << 24) or [])


def pixel_variety(png: bytes) -> tuple[int, float]:
    """Distinct colours, and the share of pixels that are not (near) white."""
    image = Image.open(io.BytesIO(png))
    small = image.resize((image.width // 2, image.height // 2))
    colours = colours_of(small)
    inked = sum(count for count, colour in colours if min(colour) < 235)
    return len(colours), inked / (small.width * small.height)


def has_colour_near(image: Image.Image, target: RGB, tolerance: int = 40) -> bool:
    return any(
        all(abs(have - want) <= tolerance for have, want in zip(colour, target, strict=True))
        for _, colour in colours_of(image)
    )


async def assert_axes_named_inside_the_chart(page: Page, *, language: str) -> None:
    radar = page.locator("svg#radar")
    box = await radar.bounding_box()
    assert box is not None
    labels = radar.locator("text")
    assert [" ".join(text.split()) for text in await labels.all_text_contents()] == [
        f"{f.number} {f.name.in_language(language)}" for f in CATALOGUE.fields
    ]
    for label in await labels.all():
        where = await label.bounding_box()
        assert where is not None and where["width"] > 50
        assert box["x"] <= where["x"] and where["x"] + where["width"] <= box["x"] + box["width"]
        assert box["y"] <= where["y"] and where["y"] + where["height"] <= box["y"] + box["height"]


async def open_report(page: Page, url: str) -> None:
    response = await page.goto(url)
    assert response is not None and response.status == 200
    assert response.headers["content-type"].startswith("text/html")


async def test_a_reader_sees_the_radar_scores_band_gaps_deficits_and_measures_in_chromium(
    served: Served,
    chromium_executable: str,
    chromium_args: tuple[str, ...],
    tmp_path: Path,
) -> None:
    await play_the_program(served)
    report_url = f"{served.url}/v1/municipalities/{KAISERSLAUTERN}/report"

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=chromium_executable, args=list(chromium_args)
        )
        try:
            context = await browser.new_context(
                viewport={"width": 1280, "height": 900},
                extra_http_headers={"Authorization": f"Bearer {served.keys[KAISERSLAUTERN]}"},
            )
            page = await context.new_page()
            problems: list[str] = []
            requested: list[str] = []
            page.on(
                "console",
                lambda message: (
                    problems.append(f"console {message.type}: {message.text}")
                    if message.type in ("error", "warning")
                    else None
                ),
            )
            page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
            page.on("request", lambda request: requested.append(request.url))
            await open_report(page, report_url)
            await page.wait_for_load_state("networkidle")

            assert await page.title() == "Feldbericht – Kaiserslautern"
            assert await page.locator("h1").inner_text() == "Feldbericht: Kaiserslautern"

            # the radar: seven axes named after the fields, the own scores as a 7-point shape
            radar = page.locator("svg#radar")
            assert await radar.is_visible()
            box = await radar.bounding_box()
            assert box is not None and box["width"] > 400 and box["height"] > 300
            await assert_axes_named_inside_the_chart(page, language="de")
            own_shape = await radar.locator("polygon.own").get_attribute("points")
            assert own_shape is not None and len(own_shape.split()) == 7
            assert await radar.locator("polygon.median").count() == 1
            assert await radar.locator("circle").count() == 7

            # the scores, the benchmark band and the quartiles per field
            overall = await page.locator("#overall").inner_text()
            assert "Gesamtindex: 52.4" in overall and "fortgeschritten" in overall
            rows = {
                number: await page.locator(f'#fields tr[data-field="{number}"]').inner_text()
                for number in range(1, 8)
            }
            assert rows[1].split("\t")[:2] == ["1 Management und Steuerung", "100.0"]
            assert "1 / 2" in rows[1] and "oberes Viertel" in rows[1]
            assert "83.4" in rows[1]  # the median of 100 and 66.7
            assert "66.7" in rows[4] and "2 / 2" in rows[4] and "unteres Viertel" in rows[4]
            assert "0.0" in rows[6] and "am Anfang" in rows[6]

            # the perspectives: a gap per group, and the lone business rating withheld
            civil = page.locator('#perspectives tr[data-field="1"][data-group="civil_society"]')
            assert "-60.0" in await civil.inner_text()
            business = page.locator('#perspectives tr[data-field="1"][data-group="business"]')
            assert "zu wenige Bewertungen" in await business.inner_text()
            assert "5.0" not in await business.inner_text()

            # a deficit with its suggestion and open points, and the planned measure
            deficit = page.locator('section.deficit[data-field="6"]')
            assert await deficit.is_visible()
            deficit_text = await deficit.inner_text()
            assert CATALOGUE.field(6).suggestions["beginning"].de in deficit_text
            assert CATALOGUE.field(6).questions[0].text.de in deficit_text
            measure = page.locator("#measures tbody tr").first
            assert await measure.is_visible()
            measure_text = await measure.inner_text()
            assert MEASURE in measure_text and "Integrationsbüro" in measure_text
            assert "geplant" in measure_text and "2026-06-01" in measure_text
            nav = page.locator("nav.report-nav")
            assert await nav.is_visible()

            screenshot = tmp_path / "field-report.png"
            png = await page.screenshot(path=str(screenshot), full_page=True)
            assert screenshot.stat().st_size > 50_000
            colours, inked = pixel_variety(png)
            assert colours > 200 and 0.03 < inked < 0.6, (colours, inked)
            chart = Image.open(io.BytesIO(await radar.screenshot()))
            assert has_colour_near(chart, (42, 111, 151))  # the own scores' outline
            assert has_colour_near(chart, (136, 136, 136), tolerance=12)  # the dashed median

            # the PDF link on the page answers the PDF
            pdf = await page.request.get(
                await page.locator("#pdf-link").evaluate("link => link.href")
            )
            assert pdf.status == 200 and pdf.headers["content-type"] == "application/pdf"

            # printed: no navigation, everything else there, a few A4 pages
            await page.emulate_media(media="print")
            assert await nav.is_hidden()
            assert await radar.is_visible() and await deficit.is_visible()
            assert await measure.is_visible()
            printed = PdfReader(io.BytesIO(await page.pdf(format="A4", print_background=True)))
            assert 1 <= len(printed.pages) <= 6
            # NFKC: Chromium's PDF sets "ff" as a ligature
            printed_text = unicodedata.normalize(
                "NFKC", " ".join(p.extract_text() for p in printed.pages)
            )
            assert "Als PDF" not in printed_text and "Druckansicht" not in printed_text
            assert "Zusammenhalt und Begegnung" in printed_text and MEASURE in printed_text
            await page.emulate_media(media="screen")

            # English, and a second municipality's key is refused
            await open_report(page, f"{report_url}?lang=en")
            assert await page.locator("h1").inner_text() == "Field report: Kaiserslautern"
            await assert_axes_named_inside_the_chart(page, language="en")
            assert "too few ratings" in await business.inner_text()

            assert not problems, problems
            local = re.compile(re.escape(served.url) + r"/")
            assert requested and all(local.match(url) for url in requested), requested
            await context.close()

            foreign = await browser.new_context(
                extra_http_headers={"Authorization": f"Bearer {served.keys[MAINZ]}"}
            )
            refused = await (await foreign.new_page()).goto(report_url)
            assert refused is not None and refused.status == 403
            await foreign.close()
        finally:
            await browser.close()


def test_pixel_variety_tells_a_blank_page_from_a_drawn_one() -> None:
    blank = Image.new("RGB", (400, 300), "white")
    buffer = io.BytesIO()
    blank.save(buffer, format="PNG")
    colours, inked = pixel_variety(buffer.getvalue())
    assert colours == 1 and inked == 0.0
    assert not has_colour_near(blank, (42, 111, 151))


async def test_a_staff_member_opens_the_mailed_link_in_a_plain_browser_and_follows_it(
    served: Served, chromium_executable: str, chromium_args: tuple[str, ...]
) -> None:
    """No key in the browser: the signed link (as the "scored" mail carries it) opens the
    report, its language and PDF links keep working, and the bare address is refused."""
    await play_the_program(served)
    report_url = f"{served.url}/v1/municipalities/{KAISERSLAUTERN}/report"
    link = sign_report_link(
        service_key=SERVICE_KEY, ags=KAISERSLAUTERN, now=time.time(), valid_for_s=3600
    )
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=chromium_executable, args=list(chromium_args)
        )
        try:
            page = await (await browser.new_context()).new_page()
            refused = await page.goto(report_url)
            assert refused is not None and refused.status == 401

            await open_report(
                page, f"{report_url}?expires={link.expires}&signature={link.signature}"
            )
            assert await page.locator("h1").inner_text() == "Feldbericht: Kaiserslautern"
            async with page.expect_navigation():
                await page.locator("#language-link").click()
            assert await page.locator("h1").inner_text() == "Field report: Kaiserslautern"
            pdf = await page.request.get(
                await page.locator("#pdf-link").evaluate("link => link.href")
            )
            assert pdf.status == 200 and pdf.headers["content-type"] == "application/pdf"
        finally:
            await browser.close()
