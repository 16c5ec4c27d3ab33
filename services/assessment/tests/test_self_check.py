"""A municipality runs the self-check over HTTP: draft, several sittings, submit, result."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from wok_assessment.adapters.repository import InMemoryAssessmentRepository
from wok_assessment.domain.catalogue import Catalogue, Catalogues, parse_catalogue
from wok_contracts import AssessmentScored, SelfCheckStarted, SelfCheckSubmitted
from wok_runtime.municipal_keys import InMemoryKeyDirectory

KAISERSLAUTERN = "07312000"
MAINZ = "07315000"
CATALOGUE_DIR = Path(__file__).resolve().parents[1] / "wok_assessment" / "catalogues"


def field_answers(catalogue: Catalogue, number: int, value: str) -> dict[str, str]:
    return {question.id: value for question in catalogue.field(number).questions}


async def start(harness: Any, ags: str, headers: dict[str, str]) -> str:
    response = await harness.client.post(f"/v1/municipalities/{ags}/self-checks", headers=headers)
    assert response.status_code in (200, 201), response.text
    return str(response.json()["id"])


async def test_staff_answer_in_two_sittings_submit_and_read_the_result(
    harness: Any, catalogues: Catalogues
) -> None:
    catalogue = catalogues.current
    key = await harness.onboard(KAISERSLAUTERN, "Kaiserslautern")
    created = await harness.client.post(
        f"/v1/municipalities/{KAISERSLAUTERN}/self-checks", headers=key
    )
    assert created.status_code == 201
    draft = created.json()
    assert (draft["id"], draft["sequence"], draft["status"]) == ("07312000-1", 1, "draft")
    assert draft["catalogue_version"] == "2026.1" and draft["questions"] == 58

    again = await harness.client.post(
        f"/v1/municipalities/{KAISERSLAUTERN}/self-checks", headers=key
    )
    assert again.status_code == 200 and again.json()["id"] == draft["id"]

    first_sitting = field_answers(catalogue, 1, "partly") | {"f2.q01": "fully"}
    response = await harness.client.patch(
        f"/v1/self-checks/{draft['id']}/answers", json={"answers": first_sitting}, headers=key
    )
    assert response.status_code == 200, response.text
    second_sitting = (
        field_answers(catalogue, 2, "planned")
        | field_answers(catalogue, 6, "fully")
        | {"f2.q08": None, "f6.q02": "dont_know", "f3.q01": "not_in_place"}
    )
    response = await harness.client.patch(
        f"/v1/self-checks/{draft['id']}/answers", json={"answers": second_sitting}, headers=key
    )
    answers = response.json()["answers"]
    assert answers["f1.q01"] == "partly"  # the first sitting is kept
    assert answers["f2.q01"] == "planned"  # and changed by the second
    assert "f2.q08" not in answers  # cleared
    assert response.json()["given"] == 8 + 7 + 8 + 1

    submitted = await harness.client.post(f"/v1/self-checks/{draft['id']}/submit", headers=key)
    assert submitted.status_code == 200, submitted.text
    result = submitted.json()
    assert result["final"] is True and result["status"] == "submitted"
    scores = {f["field"]: f["score"] for f in result["fields"]}
    levels = {f["field"]: f["level"] for f in result["fields"]}
    assert scores == {1: 66.7, 2: 33.3, 3: 0.0, 4: None, 5: None, 6: 100.0, 7: None}
    assert levels[6] == "established" and levels[3] == "insufficient_data"
    assert result["overall"] is None  # three fields with sufficient data, four needed
    assert result["strengths"] == [6] and result["deficits"] == [2]
    field_two = result["fields"][1]
    assert field_two["suggestion"]["de"] == catalogue.field(2).suggestions["developing"].de
    assert [p["question_id"] for p in field_two["open_points"]][:2] == ["f2.q01", "f2.q04"]
    field_six = result["fields"][5]
    assert (field_six["answered"], field_six["dont_know"], field_six["coverage"]) == (7, 1, 0.875)

    read = await harness.client.get(f"/v1/self-checks/{draft['id']}/result", headers=key)
    assert read.json() == result

    late = await harness.client.patch(
        f"/v1/self-checks/{draft['id']}/answers", json={"answers": {"f4.q01": "fully"}}, headers=key
    )
    assert late.status_code == 409
    twice = await harness.client.post(f"/v1/self-checks/{draft['id']}/submit", headers=key)
    assert twice.status_code == 409

    events = await harness.published_events()
    assert [type(e.data) for e in events] == [
        SelfCheckStarted,
        SelfCheckSubmitted,
        AssessmentScored,
    ]
    assert set(await harness.published_keys()) == {KAISERSLAUTERN.encode()}
    scored = events[2].data
    assert [f.score for f in scored.fields] == [66.7, 33.3, 0.0, None, None, 100.0, None]
    assert events[1].data.answered == 8 + 7 + 1 + 7 and events[1].data.dont_know == 1

    next_one = await harness.client.post(
        f"/v1/municipalities/{KAISERSLAUTERN}/self-checks", headers=key
    )
    assert next_one.status_code == 201 and next_one.json()["id"] == "07312000-2"


async def test_put_replaces_all_answers_of_the_draft(harness: Any) -> None:
    key = await harness.onboard(KAISERSLAUTERN)
    draft = await start(harness, KAISERSLAUTERN, key)
    await harness.client.patch(
        f"/v1/self-checks/{draft}/answers", json={"answers": {"f1.q01": "fully"}}, headers=key
    )
    replaced = await harness.client.put(
        f"/v1/self-checks/{draft}/answers", json={"answers": {"f7.q03": "planned"}}, headers=key
    )
    assert replaced.json()["answers"] == {"f7.q03": "planned"}
    refused = await harness.client.put(
        f"/v1/self-checks/{draft}/answers", json={"answers": {"f7.q03": None}}, headers=key
    )
    assert refused.status_code == 422
    assert refused.json()["detail"][0]["loc"] == ["body", "answers", "f7.q03"]


async def test_bad_answers_are_refused_naming_the_question(harness: Any) -> None:
    key = await harness.onboard(KAISERSLAUTERN)
    draft = await start(harness, KAISERSLAUTERN, key)
    response = await harness.client.patch(
        f"/v1/self-checks/{draft}/answers",
        json={"answers": {"f9.q01": "fully", "f1.q01": "yes", "f1.q02": "partly"}},
        headers=key,
    )
    assert response.status_code == 422
    detail = {tuple(item["loc"]): item["msg"] for item in response.json()["detail"]}
    assert "no question 'f9.q01'" in detail[("body", "answers", "f9.q01")]
    assert "not 'yes'" in detail[("body", "answers", "f1.q01")]
    unchanged = await harness.client.get(f"/v1/self-checks/{draft}", headers=key)
    assert unchanged.json()["answers"] == {}  # nothing of a refused change is stored

    empty = await harness.client.post(f"/v1/self-checks/{draft}/submit", headers=key)
    assert empty.status_code == 422
    (problem,) = empty.json()["detail"]
    assert problem["loc"] == ["answers"] and "at least one question" in problem["msg"]


async def test_only_the_municipality_s_own_current_key_may_act(harness: Any) -> None:
    own = await harness.onboard(KAISERSLAUTERN)
    other = await harness.onboard(MAINZ)
    draft = await start(harness, KAISERSLAUTERN, own)
    path = f"/v1/self-checks/{draft}/answers"
    body = {"answers": {"f1.q01": "fully"}}

    assert (await harness.client.patch(path, json=body)).status_code == 401
    unknown = {"Authorization": "Bearer guessed"}
    assert (await harness.client.patch(path, json=body, headers=unknown)).status_code == 401
    assert (await harness.client.patch(path, json=body, headers=other)).status_code == 403
    result = await harness.client.get(f"/v1/self-checks/{draft}/result", headers=other)
    assert result.status_code == 403
    foreign_start = await harness.client.post(
        f"/v1/municipalities/{KAISERSLAUTERN}/self-checks", headers=other
    )
    assert foreign_start.status_code == 403
    missing = await harness.client.get("/v1/self-checks/07312000-9/result", headers=own)
    assert missing.status_code == 404

    await harness.revoke(KAISERSLAUTERN)
    assert (await harness.client.patch(path, json=body, headers=own)).status_code == 401


async def test_a_reassessment_shows_progress_per_field(
    harness: Any, catalogues: Catalogues
) -> None:
    catalogue = catalogues.current
    key = await harness.onboard(KAISERSLAUTERN)
    first = await start(harness, KAISERSLAUTERN, key)
    await harness.client.put(
        f"/v1/self-checks/{first}/answers",
        json={
            "answers": field_answers(catalogue, 1, "planned")
            | field_answers(catalogue, 5, "partly")
        },
        headers=key,
    )
    initial = (await harness.client.post(f"/v1/self-checks/{first}/submit", headers=key)).json()
    assert initial["progress"] is None

    second = await start(harness, KAISERSLAUTERN, key)
    await harness.client.put(
        f"/v1/self-checks/{second}/answers",
        json={
            "answers": field_answers(catalogue, 1, "partly") | field_answers(catalogue, 5, "partly")
        },
        headers=key,
    )
    result = (await harness.client.post(f"/v1/self-checks/{second}/submit", headers=key)).json()
    progress = result["progress"]
    assert progress["previous_self_check_id"] == first
    changes = {f["field"]: f for f in progress["fields"]}
    assert (changes[1]["previous_score"], changes[1]["score"], changes[1]["change"]) == (
        33.3,
        66.7,
        33.4,
    )
    assert (changes[1]["previous_level"], changes[1]["level"]) == ("developing", "advanced")
    assert changes[5]["change"] == 0.0
    assert changes[2]["change"] is None


async def test_a_new_catalogue_version_leaves_earlier_results_as_they_were(
    make_harness: Any, catalogues: Catalogues
) -> None:
    repository, keys = InMemoryAssessmentRepository(), InMemoryKeyDirectory()
    v1 = catalogues.current
    answers = {"f1.q01": "fully", "f1.q02": "fully", "f1.q03": "fully", "f1.q04": "not_in_place"}
    async with make_harness(catalogues, repository=repository, keys=keys) as before:
        key = await before.onboard(KAISERSLAUTERN)
        draft = await start(before, KAISERSLAUTERN, key)
        await before.client.put(
            f"/v1/self-checks/{draft}/answers", json={"answers": answers}, headers=key
        )
        old = (await before.client.post(f"/v1/self-checks/{draft}/submit", headers=key)).json()
    assert old["fields"][0]["score"] == 80.0

    document = json.loads((CATALOGUE_DIR / "2026.1.json").read_text())
    document["version"] = "2027.1"
    document["fields"][0]["questions"][3]["weight"] = 10
    published = Catalogues([v1, parse_catalogue(document)])
    async with make_harness(published, repository=repository, keys=keys) as after:
        result = await after.client.get(f"/v1/self-checks/{draft}/result", headers=key)
        assert result.json() == old
        assert result.json()["catalogue_version"] == "2026.1"

        newer = await start(after, KAISERSLAUTERN, key)
        await after.client.put(
            f"/v1/self-checks/{newer}/answers", json={"answers": answers}, headers=key
        )
        new = (await after.client.post(f"/v1/self-checks/{newer}/submit", headers=key)).json()
        assert new["catalogue_version"] == "2027.1"
        assert new["fields"][0]["score"] == 44.4
        assert new["progress"]["previous_catalogue_version"] == "2026.1"

        current = (await after.client.get("/v1/catalogue")).json()
        assert (current["version"], current["versions"]) == ("2027.1", ["2026.1", "2027.1"])
        older = (await after.client.get("/v1/catalogue", params={"version": "2026.1"})).json()
        assert older["fields"][0]["questions"][3]["weight"] == 2 and older["current"] is False
        assert (await after.client.get("/v1/catalogue?version=1999.1")).status_code == 404


async def test_the_catalogue_is_served_with_both_languages(harness: Any) -> None:
    catalogue = (await harness.client.get("/v1/catalogue")).json()
    assert catalogue["version"] == "2026.1" and catalogue["current"] is True
    assert [f["name"]["de"] for f in catalogue["fields"]][2] == "Fairer Zugang und Teilhabechancen"
    assert [s["value"] for s in catalogue["scale"]] == [
        "not_in_place",
        "planned",
        "partly",
        "fully",
    ]
    assert catalogue["dont_know"]["label"] == {"de": "weiß nicht", "en": "don't know"}
    question = catalogue["fields"][0]["questions"][0]
    assert question["id"] == "f1.q01" and question["text"]["en"].startswith("Is there")
