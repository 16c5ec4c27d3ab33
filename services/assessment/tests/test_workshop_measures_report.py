"""Benchmark among the model municipalities, workshop perspectives, measures, field report."""

from __future__ import annotations

import re
from typing import Any

from wok_assessment.domain.catalogue import Catalogue, Catalogues
from wok_contracts import MeasurePlanned, MeasureStatusChanged, WorkshopPerspectiveRecorded

KAISERSLAUTERN = "07312000"
MAINZ = "07315000"
TRIER = "07211000"
WORMS = "07319000"


def field_answers(catalogue: Catalogue, number: int, value: str) -> dict[str, str]:
    return {question.id: value for question in catalogue.field(number).questions}


async def submit(harness: Any, ags: str, key: dict[str, str], answers: dict[str, str]) -> Any:
    created = await harness.client.post(f"/v1/municipalities/{ags}/self-checks", headers=key)
    draft = created.json()["id"]
    await harness.client.put(
        f"/v1/self-checks/{draft}/answers", json={"answers": answers}, headers=key
    )
    submitted = await harness.client.post(f"/v1/self-checks/{draft}/submit", headers=key)
    assert submitted.status_code == 200, submitted.text
    return submitted.json()


async def test_the_benchmark_ranks_each_field_among_the_latest_self_checks(
    harness: Any, catalogues: Catalogues
) -> None:
    catalogue = catalogues.current
    keys = {ags: await harness.onboard(ags) for ags in (KAISERSLAUTERN, MAINZ, TRIER, WORMS)}
    await submit(harness, MAINZ, keys[MAINZ], field_answers(catalogue, 1, "fully"))
    await submit(harness, TRIER, keys[TRIER], field_answers(catalogue, 1, "planned"))
    await submit(harness, WORMS, keys[WORMS], field_answers(catalogue, 2, "fully"))
    await submit(
        harness, KAISERSLAUTERN, keys[KAISERSLAUTERN], field_answers(catalogue, 1, "not_in_place")
    )
    # Kaiserslautern improves: only its latest self-check counts
    await submit(
        harness, KAISERSLAUTERN, keys[KAISERSLAUTERN], field_answers(catalogue, 1, "partly")
    )

    response = await harness.client.get(
        f"/v1/municipalities/{KAISERSLAUTERN}/benchmark", headers=keys[KAISERSLAUTERN]
    )
    assert response.status_code == 200
    fields = {f["field"]: f for f in response.json()["fields"]}
    # field 1 scores: Mainz 100, Kaiserslautern 66.7, Trier 33.3 (Worms has no data there)
    assert fields[1] | {} == {
        "field": 1,
        "participants": 3,
        "score": 66.7,
        "rank": 2,
        "lowest": 33.3,
        "q1": 50.0,
        "median": 66.7,
        "q3": 83.4,
        "highest": 100.0,
        "band": "upper_middle",
    }
    assert fields[2]["participants"] == 1 and fields[2]["score"] is None
    assert fields[2]["rank"] is None and fields[2]["median"] == 100.0
    assert fields[7]["participants"] == 0 and fields[7]["median"] is None

    mainz = await harness.client.get(f"/v1/municipalities/{MAINZ}/benchmark", headers=keys[MAINZ])
    assert mainz.json()["fields"][0]["rank"] == 1
    assert mainz.json()["fields"][0]["band"] == "top_quarter"
    foreign = await harness.client.get(
        f"/v1/municipalities/{MAINZ}/benchmark", headers=keys[KAISERSLAUTERN]
    )
    assert foreign.status_code == 403


async def test_workshop_perspectives_show_each_group_s_gap_to_the_self_check(
    harness: Any, catalogues: Catalogues
) -> None:
    catalogue = catalogues.current
    key = await harness.onboard(KAISERSLAUTERN)
    await submit(
        harness,
        KAISERSLAUTERN,
        key,
        field_answers(catalogue, 6, "partly") | field_answers(catalogue, 2, "fully"),
    )
    ratings = [
        ("administration", {"6": 70, "2": 90}),
        ("administration", {"6": 70, "2": 90}),
        ("administration", {"6": 70, "2": 90}),
        ("civil_society", {"6": 40, "2": 50}),
        ("civil_society", {"6": 40}),
        ("civil_society", {"6": 41}),
        ("migrant_advisory_council", {"6": 30, "2": 20}),
    ]
    for group, rated in ratings:
        recorded = await harness.client.post(
            f"/v1/municipalities/{KAISERSLAUTERN}/perspectives",
            json={"workshop": "2026-05 Auftakt", "stakeholder_group": group, "ratings": rated},
            headers=key,
        )
        assert recorded.status_code == 201, recorded.text
    for group, rated in (("business", {"6": 10}), ("administration", {"6": 0})):
        await harness.client.post(
            f"/v1/municipalities/{KAISERSLAUTERN}/perspectives",
            json={"workshop": "2026-09", "stakeholder_group": group, "ratings": rated},
            headers=key,
        )

    response = await harness.client.get(
        f"/v1/municipalities/{KAISERSLAUTERN}/perspectives",
        params={"workshop": "2026-05 Auftakt"},
        headers=key,
    )
    summary = response.json()
    assert summary["self_check_id"] == "07312000-1" and summary["min_group_size"] == 3
    six = summary["fields"][5]
    assert six["self_check_score"] == 66.7 and six["participants"] == 3 + 3 + 1
    groups = {g["stakeholder_group"]: g for g in six["groups"]}
    assert groups["administration"] | {} == {
        "stakeholder_group": "administration",
        "participants": 3,
        "counted": 3,
        "too_few_ratings": False,
        "mean": 70.0,
        "gap": 3.3,
    }
    assert (groups["civil_society"]["mean"], groups["civil_society"]["gap"]) == (40.3, -26.4)
    # one member of the migrant advisory council: their rating is never shown
    assert groups["migrant_advisory_council"] | {} == {
        "stakeholder_group": "migrant_advisory_council",
        "participants": 1,
        "counted": 0,
        "too_few_ratings": True,
        "mean": None,
        "gap": None,
    }
    # ...nor recoverable from everyone's mean, which covers the shown groups only
    assert (six["counted"], six["mean"]) == (6, 55.2)
    assert six["widest_gap"] == "civil_society"
    assert summary["fields"][1]["groups"][0]["gap"] == -10.0  # administration 90 vs 100
    assert summary["fields"][1]["groups"][1]["too_few_ratings"] is True  # civil society: one

    everything = await harness.client.get(
        f"/v1/municipalities/{KAISERSLAUTERN}/perspectives", headers=key
    )
    six_overall = everything.json()["fields"][5]
    assert six_overall["participants"] == 9
    administration = six_overall["groups"][0]
    # the lone administration rating of 2026-09 stays out of every mean, in every view
    assert (administration["participants"], administration["counted"]) == (4, 3)
    assert administration["mean"] == 70.0 and six_overall["mean"] == 55.2
    later = await harness.client.get(
        f"/v1/municipalities/{KAISERSLAUTERN}/perspectives",
        params={"workshop": "2026-09"},
        headers=key,
    )
    assert all(g["too_few_ratings"] for g in later.json()["fields"][5]["groups"])
    assert later.json()["fields"][5]["mean"] is None

    refused = await harness.client.post(
        f"/v1/municipalities/{KAISERSLAUTERN}/perspectives",
        json={"workshop": "x", "stakeholder_group": "press", "ratings": {"8": 50, "1": 101}},
        headers=key,
    )
    assert refused.status_code == 422
    locations = {tuple(item["loc"][1:]) for item in refused.json()["detail"]}
    assert ("stakeholder_group",) in locations
    assert any(loc[0] == "ratings" for loc in locations)

    events = [
        e
        for e in await harness.published_events()
        if isinstance(e.data, WorkshopPerspectiveRecorded)
    ]
    assert len(events) == 9
    assert events[3].data.stakeholder_group == "civil_society"
    assert [(r.field, r.rating) for r in events[3].data.ratings] == [(2, 50), (6, 40)]
    assert events[0].municipality == KAISERSLAUTERN


async def test_measures_are_planned_and_move_through_their_statuses(harness: Any) -> None:
    key = await harness.onboard(KAISERSLAUTERN)
    base = f"/v1/municipalities/{KAISERSLAUTERN}/measures"
    planned = await harness.client.post(
        base,
        json={
            "field": 6,
            "title": "Offener Treffpunkt im Quartier",
            "owner_role": "Quartiersmanagement",
            "starts_on": "2026-06-01",
            "due_on": "2026-12-31",
        },
        headers=key,
    )
    assert planned.status_code == 201, planned.text
    measure = planned.json()
    assert measure["status"] == "planned" and measure["field"] == 6

    running = await harness.client.patch(
        f"{base}/{measure['id']}", json={"status": "running"}, headers=key
    )
    assert running.json()["status"] == "running"
    backwards = await harness.client.patch(
        f"{base}/{measure['id']}", json={"status": "planned"}, headers=key
    )
    assert backwards.status_code == 409 and "cannot become planned" in backwards.json()["detail"]
    done = await harness.client.patch(
        f"{base}/{measure['id']}", json={"status": "done"}, headers=key
    )
    assert done.json()["status"] == "done"

    bad_dates = await harness.client.post(
        base,
        json={
            "field": 2,
            "title": "X",
            "owner_role": "Y",
            "starts_on": "2026-06-01",
            "due_on": "2026-01-01",
        },
        headers=key,
    )
    assert bad_dates.status_code == 422 and bad_dates.json()["detail"][0]["loc"] == [
        "body",
        "due_on",
    ]
    bad_field = await harness.client.post(
        base, json={"field": 8, "title": "X", "owner_role": "Y"}, headers=key
    )
    assert bad_field.json()["detail"][0]["loc"] == ["body", "field"]

    other = await harness.onboard(MAINZ)
    foreign = await harness.client.patch(
        f"/v1/municipalities/{MAINZ}/measures/{measure['id']}",
        json={"status": "dropped"},
        headers=other,
    )
    assert foreign.status_code == 404

    listed = (await harness.client.get(base, headers=key)).json()
    assert [(m["title"], m["status"]) for m in listed] == [
        ("Offener Treffpunkt im Quartier", "done")
    ]

    events = [
        e.data
        for e in await harness.published_events()
        if isinstance(e.data, MeasurePlanned | MeasureStatusChanged)
    ]
    assert [type(e) for e in events] == [MeasurePlanned, MeasureStatusChanged, MeasureStatusChanged]
    assert [(e.previous_status, e.status) for e in events[1:]] == [
        ("planned", "running"),
        ("running", "done"),
    ]


async def test_the_field_report_shows_radar_benchmark_gaps_deficits_and_measures(
    harness: Any, catalogues: Catalogues
) -> None:
    catalogue = catalogues.current
    key = await harness.onboard(KAISERSLAUTERN, "Kaiserslautern")
    other = await harness.onboard(MAINZ)
    empty = await harness.client.get(f"/v1/municipalities/{KAISERSLAUTERN}/report", headers=key)
    assert empty.status_code == 200 and 'id="no-self-check"' in empty.text

    answers = {
        **field_answers(catalogue, 1, "fully"),
        **field_answers(catalogue, 2, "planned"),
        **field_answers(catalogue, 3, "partly"),
        **field_answers(catalogue, 6, "not_in_place"),
    }
    await submit(harness, MAINZ, other, field_answers(catalogue, 1, "partly"))
    await submit(harness, KAISERSLAUTERN, key, answers)
    for group in ("civil_society", "civil_society", "civil_society", "business"):
        await harness.client.post(
            f"/v1/municipalities/{KAISERSLAUTERN}/perspectives",
            json={"workshop": "w", "stakeholder_group": group, "ratings": {"1": 40}},
            headers=key,
        )
    await harness.client.post(
        f"/v1/municipalities/{KAISERSLAUTERN}/measures",
        json={"field": 6, "title": "Treffpunkt <Quartier>", "owner_role": "Integrationsbüro"},
        headers=key,
    )

    response = await harness.client.get(f"/v1/municipalities/{KAISERSLAUTERN}/report", headers=key)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert "Feldbericht: Kaiserslautern" in page
    assert page.count("<polygon") == 4 + 1 + 1  # rings, median, own scores
    own = re.search(r'class="own" points="([^"]+)"', page)
    assert own is not None and len(own.group(1).split()) == 7
    assert "Gesamtindex" in page and "<strong>50.0</strong>" in page
    row_one = re.search(r'<tr data-field="1">(.*?)</tr>', page, re.S)
    assert row_one is not None
    assert "100.0" in row_one.group(1) and "1 / 2" in row_one.group(1)
    assert "oberes Viertel" in row_one.group(1)
    assert 'data-group="civil_society"' in page and "-60.0" in page
    business = re.search(r'<tr data-field="1" data-group="business">(.*?)</tr>', page, re.S)
    assert business is not None and "zu wenige Bewertungen" in business.group(1)
    assert "40.0" not in business.group(1)
    deficit = re.search(r'<section class="deficit" data-field="6">(.*?)</section>', page, re.S)
    assert deficit is not None
    assert catalogue.field(6).suggestions["beginning"].de in deficit.group(1)
    assert catalogue.field(6).questions[0].text.de in deficit.group(1)
    assert "Treffpunkt &lt;Quartier&gt;" in page and "<Quartier>" not in page
    english = await harness.client.get(
        f"/v1/municipalities/{KAISERSLAUTERN}/report", params={"lang": "en"}, headers=key
    )
    assert (
        "Field report: Kaiserslautern" in english.text
        and "Management and governance" in english.text
    )
    foreign = await harness.client.get(f"/v1/municipalities/{KAISERSLAUTERN}/report", headers=other)
    assert foreign.status_code == 403
