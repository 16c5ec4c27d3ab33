"""Assessment events through the reporting service on the test broker: snapshots with the
self-check funnel, scores and field scopes, digests, the federal API, exports, dashboard."""

import csv
import io
from datetime import UTC, datetime, timedelta

from faststream.kafka import TestKafkaBroker
from httpx import ASGITransport, AsyncClient

from services.reporting.tests.test_assessment_projections import (
    perspective,
    planned,
    scored,
    started,
    status_changed,
    submitted,
)
from services.reporting.tests.test_http import documented_columns
from services.reporting.tests.test_service import listen
from wok_contracts import (
    ActivityKind,
    Envelope,
    MeasureStatus,
    StakeholderGroup,
    TaskforceMemberAdded,
    TaskforceRole,
    TaskforceSector,
    decode_envelope,
)
from wok_contracts.topics import ASSESSMENT_EVENTS, EXCHANGE_ACTIVITY, REGISTRATION_EVENTS

T0 = datetime(2026, 11, 3, 8, 0, tzinfo=UTC)
BOCHUM, KL, MAINZ = "05911000", "07312000", "07315000"
NAMES = {BOCHUM: "Bochum", KL: "Kaiserslautern", MAINZ: "Mainz"}
# Field 6 (Zusammenhalt und Begegnung) scores: Bochum 40, Kaiserslautern 60, Mainz 80.
SCORES = {BOCHUM: 40.0, KL: 60.0, MAINZ: 80.0}


def assessment_story(events) -> list[tuple[str, Envelope]]:
    """(topic, envelope): three municipalities join, each completes a scored self-check, five
    workshop participants in Kaiserslautern rate field 6, Kaiserslautern plans a measure in it
    and starts it, Mainz has a three-person taskforce; plus one started self-check in Bochum."""
    played: list[tuple[str, object]] = []
    for ags, name in NAMES.items():
        played.append((REGISTRATION_EVENTS, events.municipality_registered(ags, name=name)))
        check = f"sc-{ags}"
        played += [
            (ASSESSMENT_EVENTS, started(ags, check)),
            (ASSESSMENT_EVENTS, submitted(ags, check)),
            (
                ASSESSMENT_EVENTS,
                scored(ags, {6: SCORES[ags], 1: 50.0}, self_check_id=check, overall=SCORES[ags]),
            ),
        ]
    played.append((ASSESSMENT_EVENTS, started(BOCHUM, "sc-bochum-2", sequence=2)))
    for rating in (70, 80, 90, 60, 50):
        played.append(
            (ASSESSMENT_EVENTS, perspective(KL, StakeholderGroup.CIVIL_SOCIETY, {6: rating}))
        )
    measure = planned(KL, 6)
    played += [
        (ASSESSMENT_EVENTS, measure),
        (ASSESSMENT_EVENTS, status_changed(measure, MeasureStatus.RUNNING)),
    ]
    for role in (TaskforceRole.LEAD, TaskforceRole.MEMBER, TaskforceRole.MEMBER):
        member = TaskforceMemberAdded(
            member_id=f"tf-{role.value}-{len(played)}",
            ags=MAINZ,
            role=role,
            sector=TaskforceSector.ADMINISTRATION,
        )
        played.append((REGISTRATION_EVENTS, member))
    return [
        (topic, events.envelope(data, time=T0 + timedelta(minutes=n)))
        for n, (topic, data) in enumerate(played)
    ]


async def play(service, events) -> list:
    async with TestKafkaBroker(service.runtime.broker) as broker:
        for topic, envelope in assessment_story(events):
            await broker.publish(
                envelope.to_json_bytes(), topic=topic, key=envelope.data.ags.encode()
            )
        published = await service.publisher.publish_changes()
        await service.runtime.relay.drain_once()
    return published


async def test_assessment_events_reach_the_snapshots_and_the_activity_stream(
    service, events
) -> None:
    activity = listen(service.runtime.broker, EXCHANGE_ACTIVITY)

    published = {f"{s.scope.value}:{s.scope_key}": s for s in await play(service, events)}

    program = published["program:program"]
    assert program.metrics["self_checks_started"] == 4
    assert program.metrics["self_checks_submitted"] == 3
    assert program.metrics["self_checks_scored"] == 3
    assert program.metrics["measures_running"] == 1
    assert program.metrics["perspectives"] == 5
    assert program.statistics["field_6_score_median"] == 60.0
    assert program.statistics["field_6_perspective_mean"] == 70.0
    field_6 = published["field:6"]
    assert field_6.statistics[f"rank:{MAINZ}"] == 1
    assert field_6.statistics[f"score:{BOCHUM}"] == 40.0
    assert (field_6.statistics["score_q1"], field_6.statistics["score_q3"]) == (50.0, 70.0)
    assert field_6.metrics["measures_running"] == 1
    kl = published[f"municipality:{KL}"]
    assert kl.statistics["field_6_gap"] == 10.0  # participants 70, administration 60
    mainz = published[f"municipality:{MAINZ}"]
    # Three taskforce members: withheld, and so is what would give them away.
    assert mainz.metrics["taskforce_members"] is None
    assert "taskforce_members" in mainz.suppressed
    assert mainz.statistics["field_6_rank"] == 1  # a score is not a person: published

    digests = [decode_envelope(value).data for _, value in activity.messages]
    texts = [d.text_en for d in digests]
    assert "Bochum completed its self-check." in texts
    assert "Kaiserslautern planned a measure in Zusammenhalt und Begegnung." in texts
    assert "Kaiserslautern started a measure in Zusammenhalt und Begegnung." in texts
    assert sum(d.kind is ActivityKind.SELF_CHECK_COMPLETED for d in digests) == 3
    assert sum(d.kind is ActivityKind.SELF_CHECK_STARTED for d in digests) == 4
    assert len(digests) == 3 + 4 + 3 + 2  # joined, started, completed, measure: none per person


async def test_the_federal_office_reads_fields_exports_and_the_dashboard_page(
    service, events
) -> None:
    await play(service, events)
    auth = {"Authorization": f"Bearer {service.federal_key}"}

    async with AsyncClient(
        transport=ASGITransport(app=service.app), base_url="http://reporting"
    ) as client:
        field = await client.get("/v1/aggregates/fields/6", headers=auth)
        no_field = await client.get("/v1/aggregates/fields/8", headers=auth)
        fields_csv = await client.get("/v1/aggregates/fields.csv", headers=auth)
        fields_json = await client.get("/v1/aggregates/fields.json", headers=auth)
        export = await client.get("/v1/aggregates/export.csv", headers=auth)
        refused = await client.get("/v1/aggregates/fields/6")
        page = await client.get("/dashboard")

    assert field.status_code == 200
    assert field.json()["scope"] == "field"
    assert field.json()["statistics"]["score_median"] == 60.0
    assert no_field.status_code == 422
    assert refused.status_code == 401
    rows = list(csv.DictReader(io.StringIO(fields_csv.text)))
    assert [row["field"] for row in rows] == [str(n) for n in range(1, 8)]
    cohesion = rows[5]
    assert cohesion["field_name_de"] == "Zusammenhalt und Begegnung"
    assert (cohesion["score_min"], cohesion["score_max"]) == ("40.0", "80.0")
    assert cohesion["perspective_mean"] == "70.0"
    assert cohesion["measures_running"] == "1"
    assert set(rows[0]) <= documented_columns()
    json_row = fields_json.json()["rows"][5]
    assert json_row["municipalities"][MAINZ] == {"score": 80.0, "rank": 1}
    scopes = list(csv.DictReader(io.StringIO(export.text)))
    assert set(scopes[0]) <= documented_columns()
    kl = next(row for row in scopes if row["scope_key"] == KL)
    assert (kl["field_6_score"], kl["field_6_rank"], kl["field_6_quartile"]) == ("60.0", "2", "3")
    assert kl["field_6_perspective_mean"] == "70.0"
    mainz = next(row for row in scopes if row["scope_key"] == MAINZ)
    assert mainz["taskforce_members"] == "."
    assert mainz["field_6_perspective_mean"] == ""  # nobody rated: no figure, not withheld
    assert {row["scope"] for row in scopes} == {"program", "land", "municipality"}
    # The page holds no figures: it is served without a key and reads the API with one.
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "/v1/aggregates" in page.text
    assert "http://" not in page.text.replace("http://www.w3.org/2000/svg", "")
