"""The field report as a PDF: the same content as the HTML page, read back with pypdf."""

from __future__ import annotations

import io
import re
import time
from typing import Any

from pypdf import PdfReader

from services.assessment.tests.conftest import SERVICE_KEY
from services.assessment.tests.test_workshop_measures_report import (
    KAISERSLAUTERN,
    MAINZ,
    field_answers,
    submit,
)
from wok_assessment.domain.catalogue import Catalogues
from wok_runtime.report_links import sign_report_link


def pdf_text(document: bytes) -> tuple[PdfReader, str]:
    reader = PdfReader(io.BytesIO(document))
    text = "\n".join(page.extract_text() for page in reader.pages)
    return reader, re.sub(r"[ \t]+", " ", text)


async def test_the_pdf_report_carries_the_fields_scores_gaps_deficits_and_measures(
    harness: Any, catalogues: Catalogues
) -> None:
    catalogue = catalogues.current
    key = await harness.onboard(KAISERSLAUTERN, "Kaiserslautern")
    other = await harness.onboard(MAINZ)
    await submit(harness, MAINZ, other, field_answers(catalogue, 1, "partly"))
    await submit(
        harness,
        KAISERSLAUTERN,
        key,
        field_answers(catalogue, 1, "fully")
        | field_answers(catalogue, 2, "planned")
        | field_answers(catalogue, 3, "partly")
        | field_answers(catalogue, 6, "not_in_place"),
    )
    for group in ("civil_society", "civil_society", "civil_society", "youth_parliament"):
        await harness.client.post(
            f"/v1/municipalities/{KAISERSLAUTERN}/perspectives",
            json={"workshop": "w", "stakeholder_group": group, "ratings": {"1": 40}},
            headers=key,
        )
    await harness.client.post(
        f"/v1/municipalities/{KAISERSLAUTERN}/measures",
        json={
            "field": 6,
            "title": "Offener Treffpunkt im Quartier",
            "owner_role": "Integrationsbüro",
            "starts_on": "2026-06-01",
            "due_on": "2026-12-31",
        },
        headers=key,
    )

    response = await harness.client.get(
        f"/v1/municipalities/{KAISERSLAUTERN}/report.pdf", headers=key
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/pdf"
    assert 'filename="feldbericht-07312000.pdf"' in response.headers["content-disposition"]
    reader, text = pdf_text(response.content)
    assert 1 <= len(reader.pages) <= 4
    assert reader.metadata is not None and reader.metadata.title == "Feldbericht: Kaiserslautern"
    assert "Feldbericht: Kaiserslautern" in text and "AGS 07312000" in text
    assert "Gesamtindex: 50.0" in text
    for field in catalogue.fields:
        assert f"{field.number} {field.name.de}" in text  # on the radar's axes and in the table
    assert text.count("Interkulturelle Öffnung und Antirassismus") >= 2
    for score in ("100.0", "33.3", "66.7", "0.0"):
        assert score in text
    assert "1 / 2" in text and "oberes Viertel" in text  # field 1: rank and band
    assert "-60.0" in text  # civil society sees field 1 at 40, the self-check at 100
    assert "zu wenige Bewertungen" in text  # the lone youth parliament rating
    suggestion = catalogue.field(6).suggestions["beginning"].de
    assert " ".join(suggestion.split()[:6]) in text.replace("\n", " ")
    assert "Offener Treffpunkt im Quartier" in text and "Integrationsbüro" in text
    assert "2026-06-01" in text and "geplant" in text

    # the radar chart is vector graphics: filled and dashed paths, no image on any page
    first_page = reader.pages[0]
    content = first_page.get_contents()
    assert content is not None
    drawing = content.get_data().decode("latin-1")
    assert re.search(r"\[[\d.]+ [\d.]+\] [\d.]+ d", drawing)  # the dashed median
    assert " B\n" in drawing or " B*\n" in drawing or "\nB\n" in drawing  # the filled own area
    assert not any(page.images for page in reader.pages)

    english = await harness.client.get(
        f"/v1/municipalities/{KAISERSLAUTERN}/report.pdf", params={"lang": "en"}, headers=key
    )
    _, english_text = pdf_text(english.content)
    assert "Field report: Kaiserslautern" in english_text
    assert "Management and governance" in english_text and "too few ratings" in english_text


async def test_a_measure_title_in_another_script_does_not_break_the_pdf(harness: Any) -> None:
    key = await harness.onboard(KAISERSLAUTERN, "Kaiserslautern")
    await harness.client.post(
        f"/v1/municipalities/{KAISERSLAUTERN}/measures",
        json={"field": 5, "title": "Sprachcafé Українська / العربية", "owner_role": "Büro"},
        headers=key,
    )
    response = await harness.client.get(
        f"/v1/municipalities/{KAISERSLAUTERN}/report.pdf", headers=key
    )
    assert response.status_code == 200
    _, text = pdf_text(response.content)
    assert "Sprachcafé" in text and "Es wurde noch kein Selbstcheck eingereicht." in text


async def test_the_reports_answer_only_the_municipality_s_own_current_key(
    harness: Any,
) -> None:
    own = await harness.onboard(KAISERSLAUTERN, "Kaiserslautern")
    other = await harness.onboard(MAINZ)
    for path in ("report", "report.pdf"):
        url = f"/v1/municipalities/{KAISERSLAUTERN}/{path}"
        assert (await harness.client.get(url, headers=own)).status_code == 200
        missing = await harness.client.get(url)
        assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
        guessed = await harness.client.get(url, headers={"Authorization": "Bearer guessed"})
        assert guessed.status_code == 401
        foreign = await harness.client.get(url, headers=other)
        assert foreign.status_code == 403
        assert foreign.json()["detail"] == f"this key may act only for {MAINZ}"
        assert (await harness.client.get(url, params={"lang": "fr"}, headers=own)).json()["detail"][
            0
        ]["loc"] == ["query", "lang"]
    await harness.revoke(KAISERSLAUTERN)
    for path in ("report", "report.pdf"):
        url = f"/v1/municipalities/{KAISERSLAUTERN}/{path}"
        assert (await harness.client.get(url, headers=own)).status_code == 401


async def test_a_signed_link_from_the_scored_mail_opens_the_report_without_a_key(
    harness: Any,
) -> None:
    await harness.onboard(KAISERSLAUTERN, "Kaiserslautern")
    await harness.onboard(MAINZ)
    link = sign_report_link(
        service_key=SERVICE_KEY, ags=KAISERSLAUTERN, now=time.time(), valid_for_s=3600
    )
    page = await harness.client.get(
        f"/v1/municipalities/{KAISERSLAUTERN}/report", params={"lang": "en", **link.query()}
    )
    assert page.status_code == 200 and "Kaiserslautern" in page.text
    # the page's own links carry the permission on to the PDF and the other language
    suffix = f"&amp;expires={link.expires}&amp;signature={link.signature}"
    assert f'href="report.pdf?lang=en{suffix}"' in page.text
    assert f'href="report?lang=de{suffix}"' in page.text
    pdf = await harness.client.get(
        f"/v1/municipalities/{KAISERSLAUTERN}/report.pdf", params=link.query()
    )
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"


async def test_a_changed_foreign_expired_or_half_link_opens_nothing(harness: Any) -> None:
    await harness.onboard(KAISERSLAUTERN, "Kaiserslautern")
    await harness.onboard(MAINZ)
    now = time.time()
    link = sign_report_link(service_key=SERVICE_KEY, ags=KAISERSLAUTERN, now=now, valid_for_s=60)
    old = sign_report_link(
        service_key=SERVICE_KEY, ags=KAISERSLAUTERN, now=now - 7200, valid_for_s=60
    )
    foreign_key = sign_report_link(
        service_key="another deployment", ags=KAISERSLAUTERN, now=now, valid_for_s=60
    )
    for path in ("report", "report.pdf"):
        own = f"/v1/municipalities/{KAISERSLAUTERN}/{path}"
        other = f"/v1/municipalities/{MAINZ}/{path}"
        refused = {
            "other municipality": await harness.client.get(other, params=link.query()),
            "longer validity": await harness.client.get(
                own, params={**link.query(), "expires": str(link.expires + 86400)}
            ),
            "expired": await harness.client.get(own, params=old.query()),
            "other deployment": await harness.client.get(own, params=foreign_key.query()),
        }
        for what, response in refused.items():
            assert response.status_code == 403, what
        assert "expired" in refused["expired"].json()["detail"]
        assert "signature" in refused["longer validity"].json()["detail"]
        half = await harness.client.get(own, params={"signature": link.signature})
        assert half.status_code == 401 and "expires" in half.json()["detail"]
        malformed = await harness.client.get(own, params={**link.query(), "signature": "zz"})
        assert malformed.status_code == 422
        assert malformed.json()["detail"][0]["loc"] == ["query", "signature"]
