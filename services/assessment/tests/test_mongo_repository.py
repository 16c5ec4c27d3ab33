"""Storage conformance: every query and update shape of the assessment repository, run against
the embedded wire server (nx-27017), asserting what is stored (DESIGN.md section 8)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from wok_assessment.adapters.repository import MongoAssessmentRepository
from wok_assessment.domain.catalogue import load_catalogues
from wok_assessment.domain.measures import change_status, plan_measure
from wok_assessment.domain.self_check import start_self_check, submit_self_check
from wok_assessment.domain.workshop import record_perspective
from wok_contracts import decode_envelope, new_envelope
from wok_contracts.events.assessment import MeasureStatus, StakeholderGroup
from wok_contracts.topics import ASSESSMENT_EVENTS
from wok_runtime.mongo import mongo_client
from wok_runtime.outbox import MongoOutboxSource, OutboundEvent, pending_messages

KAISERSLAUTERN = "07312000"
MAINZ = "07315000"
NOW = datetime(2026, 4, 1, 10, 0, tzinfo=UTC)
CATALOGUE = load_catalogues().current


@pytest.fixture
async def repository(mongodb_uri: str) -> AsyncIterator[MongoAssessmentRepository]:
    client = mongo_client(mongodb_uri)
    repository = MongoAssessmentRepository(client[f"wok_assessment_test_{uuid.uuid4().hex[:12]}"])
    await repository.ensure_indexes()
    try:
        yield repository
    finally:
        await client.close()


def outbound(data: Any, ags: str) -> OutboundEvent:
    return OutboundEvent(
        ASSESSMENT_EVENTS, new_envelope(data, source="/wok/assessment", municipality=ags)
    )


async def started(repository: MongoAssessmentRepository, ags: str) -> Any:
    latest = await repository.latest_self_check(ags)
    draft, event = start_self_check(ags=ags, latest=latest, catalogue=CATALOGUE, now=NOW)
    assert await repository.add_self_check(draft, [outbound(event, ags)])
    return draft


async def test_a_self_check_is_stored_answered_and_submitted_with_its_events(
    repository: MongoAssessmentRepository,
) -> None:
    draft = await started(repository, KAISERSLAUTERN)
    assert not await repository.add_self_check(draft, [])  # the number is taken

    assert await repository.change_answers(
        draft.id,
        to_set={"f1.q01": "fully", "f1.q02": "planned", "f3.q10": "dont_know"},
        to_clear=[],
        replace_all=False,
        now=NOW,
    )
    assert await repository.change_answers(
        draft.id, to_set={"f2.q01": "partly"}, to_clear=["f1.q02"], replace_all=False, now=NOW
    )
    stored = await repository.get_self_check(draft.id)
    assert stored is not None
    assert stored.answers == {"f1.q01": "fully", "f3.q10": "dont_know", "f2.q01": "partly"}
    assert stored.revision == 2
    assert stored.started_at == NOW and stored.started_at.tzinfo is not None

    submitted, _, events = submit_self_check(stored, CATALOGUE, now=NOW + timedelta(hours=1))
    stale = submitted.__class__(**{**vars(submitted), "revision": 1})
    assert not await repository.submit(stale, events=[])  # answers changed since it was read
    assert await repository.submit(
        submitted, events=[outbound(event, KAISERSLAUTERN) for event in events]
    )
    assert not await repository.change_answers(
        draft.id, to_set={"f4.q01": "fully"}, to_clear=[], replace_all=False, now=NOW
    )
    final = await repository.get_self_check(draft.id)
    assert final is not None and final.status == "submitted"
    assert final.submitted_at == NOW + timedelta(hours=1)
    assert "f4.q01" not in final.answers

    document = await repository.self_checks.find_one({"_id": draft.id})
    types = [decode_envelope(m.value).type for m in pending_messages(document)]
    assert types == [
        "assessment.self_check.started.v1",
        "assessment.self_check.submitted.v1",
        "assessment.self_check.scored.v1",
    ]
    source = MongoOutboxSource(repository.self_checks)
    for message in pending_messages(document):
        await source.mark_published(message)
    assert await source.documents_with_pending(10) == []


async def test_put_replaces_the_whole_answer_map(repository: MongoAssessmentRepository) -> None:
    draft = await started(repository, KAISERSLAUTERN)
    await repository.change_answers(
        draft.id, to_set={"f1.q01": "fully"}, to_clear=[], replace_all=False, now=NOW
    )
    await repository.change_answers(
        draft.id, to_set={"f7.q08": "planned"}, to_clear=[], replace_all=True, now=NOW
    )
    stored = await repository.get_self_check(draft.id)
    assert stored is not None and stored.answers == {"f7.q08": "planned"}


async def test_the_latest_and_the_submitted_self_checks_are_found(
    repository: MongoAssessmentRepository,
) -> None:
    for ags in (KAISERSLAUTERN, MAINZ):
        for _ in range(2):
            draft = await started(repository, ags)
            await repository.change_answers(
                draft.id, to_set={"f1.q01": "fully"}, to_clear=[], replace_all=False, now=NOW
            )
            current = await repository.get_self_check(draft.id)
            assert current is not None
            submitted, _, _ = submit_self_check(current, CATALOGUE, now=NOW)
            assert await repository.submit(submitted, events=[])
    open_draft = await started(repository, KAISERSLAUTERN)

    latest = await repository.latest_self_check(KAISERSLAUTERN)
    assert latest is not None and latest.id == open_draft.id == "07312000-3"
    assert [s.id for s in await repository.submitted_self_checks(KAISERSLAUTERN)] == [
        "07312000-1",
        "07312000-2",
    ]
    assert [s.id for s in await repository.latest_submitted_of_all()] == [
        "07312000-2",
        "07315000-2",
    ]


async def test_perspectives_are_stored_and_filtered_by_workshop(
    repository: MongoAssessmentRepository,
) -> None:
    for workshop, minutes in (("Auftakt", 0), ("Auftakt", 1), ("Herbst", 2)):
        perspective, event = record_perspective(
            ags=KAISERSLAUTERN,
            workshop=workshop,
            group=StakeholderGroup.CIVIL_SOCIETY,
            ratings={6: 40, 1: 55},
            now=NOW + timedelta(minutes=minutes),
        )
        await repository.add_perspective(perspective, [outbound(event, KAISERSLAUTERN)])
    found = await repository.perspectives(KAISERSLAUTERN, workshop="Auftakt")
    assert len(found) == 2
    assert found[0].ratings == {1: 55, 6: 40} and found[0].recorded_at == NOW
    assert len(await repository.perspectives(KAISERSLAUTERN)) == 3
    assert await repository.perspectives(MAINZ) == []


async def test_a_measure_status_changes_only_from_the_status_read(
    repository: MongoAssessmentRepository,
) -> None:
    measure, event = plan_measure(
        ags=KAISERSLAUTERN,
        field=6,
        title="Treffpunkt",
        owner_role="Quartiersmanagement",
        starts_on=date(2026, 6, 1),
        due_on=None,
        today=NOW.date(),
    )
    await repository.add_measure(measure, [outbound(event, KAISERSLAUTERN)])
    running, changed = change_status(measure, MeasureStatus.RUNNING, today=date(2026, 6, 2))
    assert await repository.change_measure_status(
        running, previous=MeasureStatus.PLANNED, events=[outbound(changed, KAISERSLAUTERN)]
    )
    dropped, _ = change_status(measure, MeasureStatus.DROPPED, today=date(2026, 6, 3))
    assert not await repository.change_measure_status(
        dropped, previous=MeasureStatus.PLANNED, events=[]
    )
    stored = await repository.get_measure(measure.id)
    assert stored == running
    assert await repository.measures(KAISERSLAUTERN) == [running]
    document = await repository.measures_collection.find_one({"_id": measure.id})
    assert document["outbox_pending"] == 2
