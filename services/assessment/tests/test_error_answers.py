"""Domain errors answer the same 4xx from every route (mapped once, by exception handlers):
status and a body that says what is wrong, naming the field where there is one."""

from __future__ import annotations

from typing import Any

from services.assessment.tests.test_workshop_measures_report import KAISERSLAUTERN


async def test_each_domain_error_answers_its_status_and_reason(harness: Any) -> None:
    key = await harness.onboard(KAISERSLAUTERN)
    unknown_version = await harness.client.get("/v1/catalogue", params={"version": "1999.1"})
    assert unknown_version.status_code == 404
    assert "1999.1" in unknown_version.json()["detail"]

    missing = await harness.client.get("/v1/self-checks/07312000-9", headers=key)
    assert (missing.status_code, missing.json()) == (
        404,
        {"detail": "self-check 07312000-9 does not exist"},
    )

    draft = (
        await harness.client.post(f"/v1/municipalities/{KAISERSLAUTERN}/self-checks", headers=key)
    ).json()["id"]
    cleared = await harness.client.put(
        f"/v1/self-checks/{draft}/answers", json={"answers": {"f2.q01": None}}, headers=key
    )
    assert cleared.status_code == 422
    assert cleared.json()["detail"] == [
        {
            "loc": ["body", "answers", "f2.q01"],
            "msg": "use PATCH to clear an answer",
            "type": "value_error",
        }
    ]
    await harness.client.patch(
        f"/v1/self-checks/{draft}/answers", json={"answers": {"f1.q01": "fully"}}, headers=key
    )
    assert (await harness.client.post(f"/v1/self-checks/{draft}/submit", headers=key)).is_success
    late = await harness.client.patch(
        f"/v1/self-checks/{draft}/answers", json={"answers": {"f1.q02": "fully"}}, headers=key
    )
    assert (late.status_code, late.json()) == (
        409,
        {"detail": f"self-check {draft} was submitted; its answers are final"},
    )

    measures = f"/v1/municipalities/{KAISERSLAUTERN}/measures"
    dates = await harness.client.post(
        measures,
        json={
            "field": 1,
            "title": "T",
            "owner_role": "R",
            "starts_on": "2026-02-01",
            "due_on": "2026-01-01",
        },
        headers=key,
    )
    assert dates.status_code == 422 and dates.json()["detail"][0]["loc"] == ["body", "due_on"]
    unknown_measure = await harness.client.patch(
        f"{measures}/nope", json={"status": "done"}, headers=key
    )
    assert (unknown_measure.status_code, unknown_measure.json()) == (
        404,
        {"detail": f"measure nope does not exist for {KAISERSLAUTERN}"},
    )
