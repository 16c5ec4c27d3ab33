"""Self-checks, scores, workshop perspectives, measures and taskforce members, projected into
the program, Land, municipality and field figures (no I/O)."""

import random
import statistics
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from wok_contracts import (
    AssessmentLevel,
    AssessmentScored,
    FieldRating,
    FieldScore,
    MeasurePlanned,
    MeasureStatus,
    MeasureStatusChanged,
    SelfCheckStarted,
    SelfCheckSubmitted,
    StakeholderGroup,
    TaskforceMemberAdded,
    TaskforceMemberRemoved,
    TaskforceRole,
    TaskforceSector,
    WorkshopPerspectiveRecorded,
    new_envelope,
)
from wok_reporting.digests import digest_of
from wok_reporting.domain import (
    MEASURES,
    MUNICIPALITIES_SCORED,
    PERSPECTIVES,
    PROGRAM,
    SELF_CHECKS_SCORED,
    SELF_CHECKS_STARTED,
    SELF_CHECKS_SUBMITTED,
    TASKFORCE_MEMBERS,
    Distribution,
    Projection,
    aggregate,
    measure_field_metric,
    measure_status_metric,
    perspective_field_metric,
    perspective_group_metric,
    ranks,
    taskforce_role_metric,
    taskforce_sector_metric,
)
from wok_reporting.handlers import fact_of

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
KL, MZ, BOCHUM, TRIER, SPEYER = "07312000", "07315000", "05911000", "07211000", "07318000"


def ref(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def project(timed: list[tuple[Any, int]]) -> Projection:
    facts = []
    for data, minutes in timed:
        envelope = new_envelope(data, source="/test", municipality=data.ags)
        envelope = envelope.model_copy(update={"time": T0 + timedelta(minutes=minutes)})
        facts.append(fact_of(envelope))
    return Projection.from_facts(fact for fact in facts if fact is not None)


def scored(
    ags: str,
    scores: dict[int, float | None],
    *,
    self_check_id: str | None = None,
    sequence: int = 1,
    overall: float | None = None,
    insufficient: tuple[int, ...] = (),
) -> AssessmentScored:
    return AssessmentScored(
        self_check_id=self_check_id or ref("sc"),
        ags=ags,
        sequence=sequence,
        catalogue_version="2026.1",
        fields=[
            FieldScore(
                field=number,
                score=scores.get(number),
                level=AssessmentLevel.INSUFFICIENT_DATA
                if number in insufficient or scores.get(number) is None
                else AssessmentLevel.DEVELOPING,
                coverage=0.8,
                answered=8,
                questions=10,
            )
            for number in range(1, 8)
        ],
        overall=overall,
        overall_level=AssessmentLevel.DEVELOPING,
    )


def started(ags: str, self_check_id: str, sequence: int = 1) -> SelfCheckStarted:
    return SelfCheckStarted(
        self_check_id=self_check_id, ags=ags, sequence=sequence, catalogue_version="2026.1"
    )


def submitted(ags: str, self_check_id: str, sequence: int = 1) -> SelfCheckSubmitted:
    return SelfCheckSubmitted(
        self_check_id=self_check_id,
        ags=ags,
        sequence=sequence,
        catalogue_version="2026.1",
        questions=58,
        answered=40,
        dont_know=3,
        submitted_at=T0,
    )


def perspective(ags: str, group: StakeholderGroup, ratings: dict[int, int]) -> Any:
    return WorkshopPerspectiveRecorded(
        perspective_id=ref("p"),
        ags=ags,
        workshop="2026-11 Auftakt",
        stakeholder_group=group,
        ratings=[FieldRating(field=n, rating=r) for n, r in ratings.items()],
    )


def planned(ags: str, number: int, status: MeasureStatus = MeasureStatus.PLANNED) -> Any:
    return MeasurePlanned(
        measure_id=ref("m"),
        ags=ags,
        field=number,
        title="Begegnungsorte im Quartier",
        owner_role="Integrationsbüro",
        status=status,
    )


def status_changed(measure: MeasurePlanned, status: MeasureStatus) -> MeasureStatusChanged:
    return MeasureStatusChanged(
        measure_id=measure.measure_id,
        ags=measure.ags,
        field=measure.field,
        previous_status=measure.status,
        status=status,
        changed_on=date(2026, 11, 20),
    )


def test_the_self_check_funnel_counts_started_submitted_and_scored() -> None:
    only_started, handed_in, done = ref("sc"), ref("sc"), ref("sc")
    late = ref("sc")  # its start event never arrived: counted as started all the same
    projection = project(
        [
            (started(KL, only_started), 0),
            (started(MZ, handed_in), 0),
            (submitted(MZ, handed_in), 5),
            (started(BOCHUM, done), 0),
            (submitted(BOCHUM, done), 5),
            (scored(BOCHUM, {1: 40.0}, self_check_id=done), 5),
            (scored(TRIER, {1: 60.0}, self_check_id=late), 7),
            (submitted(TRIER, late), 7),
            (submitted(TRIER, late), 7),  # delivered twice
        ]
    )

    metrics = aggregate(projection)[PROGRAM].metrics

    assert metrics[SELF_CHECKS_STARTED] == 4
    assert metrics[SELF_CHECKS_SUBMITTED] == 3
    assert metrics[SELF_CHECKS_SCORED] == 2
    assert metrics[MUNICIPALITIES_SCORED] == 2
    assert aggregate(projection)[f"municipality:{MZ}"].metrics[SELF_CHECKS_SUBMITTED] == 1


def test_scores_quartiles_and_ranks_across_municipalities() -> None:
    first_kl = ref("sc")
    projection = project(
        [
            (scored(KL, {1: 10.0}, self_check_id=first_kl, sequence=1), 0),
            # Kaiserslautern's second self-check replaces its first in the comparison.
            (scored(KL, {1: 70.0, 2: 55.5}, sequence=2, overall=62.0), 30),
            (scored(MZ, {1: 50.0, 2: 20.0}, overall=40.0), 1),
            (scored(BOCHUM, {1: 50.0, 2: 80.0}, overall=70.0), 2),
            (scored(TRIER, {1: 30.0, 2: 99.0}, insufficient=(2,)), 3),  # field 2 takes no part
        ]
    )

    figures = aggregate(projection)
    program = figures[PROGRAM].statistics
    field_1 = figures["field:1"].statistics

    # Field 1: 30, 50, 50, 70 → Q1 at 0.75 → 45, median 50, Q3 at 2.25 → 55.
    assert (program["field_1_score_min"], program["field_1_score_max"]) == (30.0, 70.0)
    assert (program["field_1_score_q1"], program["field_1_score_median"]) == (45.0, 50.0)
    assert (program["field_1_score_q3"], program["field_1_score_mean"]) == (55.0, 50.0)
    assert field_1["score_q1"] == 45.0 and field_1["score_median"] == 50.0
    assert {k: v for k, v in field_1.items() if k.startswith("rank:")} == {
        f"rank:{KL}": 1,
        f"rank:{MZ}": 2,  # a tie shares the rank
        f"rank:{BOCHUM}": 2,
        f"rank:{TRIER}": 4,
    }
    assert field_1[f"score:{KL}"] == 70.0
    assert figures["field:1"].metrics[MUNICIPALITIES_SCORED] == 4
    assert figures["field:2"].metrics[MUNICIPALITIES_SCORED] == 3
    kl = figures[f"municipality:{KL}"].statistics
    assert (kl["field_1_score"], kl["field_1_rank"], kl["field_1_quartile"]) == (70.0, 1, 4)
    assert (kl["field_2_score"], kl["field_2_rank"]) == (55.5, 2)
    assert (kl["overall_score"], kl["overall_rank"]) == (62.0, 2)
    trier = figures[f"municipality:{TRIER}"].statistics
    assert (trier["field_1_quartile"], trier["field_2_score"], trier["field_2_rank"]) == (
        1,
        None,
        None,
    )
    # A Land compares its own municipalities: Rhineland-Palatinate holds KL, MZ and Trier.
    land = figures["land:07"].statistics
    assert (land["field_1_score_min"], land["field_1_score_median"]) == (30.0, 50.0)


def test_perspective_means_and_their_gap_to_the_self_check_score() -> None:
    ratings = [70, 80, 60, 90, 50]
    timed: list[tuple[Any, int]] = [(scored(KL, {6: 40.0, 1: 50.0}), 0)]
    groups = [StakeholderGroup.CIVIL_SOCIETY] * 3 + [StakeholderGroup.POLITICS] * 2
    for rating, group in zip(ratings, groups, strict=True):
        timed.append((perspective(KL, group, {6: rating}), 1))

    figures = aggregate(project(timed))
    kl = figures[f"municipality:{KL}"]

    assert kl.metrics[PERSPECTIVES] == 5
    assert kl.metrics[perspective_group_metric("civil_society")] == 3
    assert kl.metrics[perspective_field_metric(6)] == 5
    assert kl.metrics[perspective_field_metric(1)] == 0
    assert kl.statistics["field_6_perspective_mean"] == 70.0
    assert kl.statistics["field_6_gap"] == 30.0  # participants see it 30 points better
    assert kl.statistics["field_1_perspective_mean"] is None
    assert kl.derived_from["field_6_gap"] == (f"municipality:{KL}", perspective_field_metric(6))
    assert figures["field:6"].statistics["perspective_mean"] == 70.0


def test_measures_by_field_and_status() -> None:
    cohesion = planned(KL, 6)
    second = planned(KL, 6)
    management = planned(MZ, 1, MeasureStatus.RUNNING)
    projection = project(
        [
            (cohesion, 0),
            (second, 0),
            (management, 0),
            (status_changed(cohesion, MeasureStatus.RUNNING), 5),
            (status_changed(cohesion, MeasureStatus.DONE), 9),
            (status_changed(management, MeasureStatus.DROPPED), 3),
        ]
    )

    figures = aggregate(projection)
    program = figures[PROGRAM].metrics

    assert program[MEASURES] == 3
    assert program[measure_status_metric("done")] == 1
    assert program[measure_status_metric("planned")] == 1
    assert program[measure_status_metric("dropped")] == 1
    assert program[measure_field_metric(6)] == 2
    assert figures["field:6"].metrics[measure_status_metric("done")] == 1
    assert figures["field:6"].metrics[MEASURES] == 2
    assert figures[f"municipality:{MZ}"].metrics[measure_field_metric(1)] == 1


def test_taskforce_members_by_role_and_sector_and_a_removal() -> None:
    members = [
        TaskforceMemberAdded(
            member_id=ref("tf"), ags=KL, role=role, sector=TaskforceSector.ADMINISTRATION
        )
        for role in (TaskforceRole.LEAD, TaskforceRole.MEMBER, TaskforceRole.MEMBER)
    ]
    removed = TaskforceMemberRemoved(member_id=members[1].member_id, ags=KL)
    # The removal arrives before its addition is redelivered: the member stays removed.
    projection = project([(m, 0) for m in members] + [(removed, 5), (members[1], 0)])

    metrics = aggregate(projection)[f"municipality:{KL}"].metrics

    assert metrics[TASKFORCE_MEMBERS] == 2
    assert metrics[taskforce_role_metric("lead")] == 1
    assert metrics[taskforce_role_metric("member")] == 1
    assert metrics[taskforce_sector_metric("administration")] == 2


def test_the_projection_does_not_depend_on_arrival_order() -> None:
    measure = planned(KL, 3)
    sc = ref("sc")
    timed = [
        (started(KL, sc), 0),
        (submitted(KL, sc), 1),
        (scored(KL, {3: 33.3}, self_check_id=sc), 1),
        (measure, 2),
        (status_changed(measure, MeasureStatus.RUNNING), 3),
        (perspective(KL, StakeholderGroup.BUSINESS, {3: 40}), 4),
    ]
    shuffled = timed[:]
    random.Random(3).shuffle(shuffled)

    assert aggregate(project(shuffled)) == aggregate(project(timed))


def test_digests_of_a_completed_self_check_and_a_planned_measure() -> None:
    sc = ref("sc")
    cohesion = planned(KL, 6)
    texts = {}
    for data in (
        started(BOCHUM, sc),
        submitted(BOCHUM, sc),
        cohesion,
        status_changed(cohesion, MeasureStatus.DONE),
    ):
        envelope = new_envelope(data, source="/test", municipality=data.ags)
        name = "Bochum" if data.ags == BOCHUM else "Kaiserslautern"
        digest = digest_of(envelope, municipality_name=name)
        assert digest is not None
        texts[digest.kind.value] = (digest.text_en, digest.text_de)

    assert texts["self_check_started"][0] == "Bochum started its self-check."
    assert texts["self_check_completed"] == (
        "Bochum completed its self-check.",
        "Bochum hat den Selbstcheck abgeschlossen.",
    )
    assert texts["measure_planned"][0] == (
        "Kaiserslautern planned a measure in Zusammenhalt und Begegnung."
    )
    assert texts["measure_status_changed"][0] == (
        "Kaiserslautern completed a measure in Zusammenhalt und Begegnung."
    )
    # The measure's free-text title is never repeated in a digest.
    assert all("Begegnungsorte" not in text for pair in texts.values() for text in pair)


def test_no_digest_for_a_workshop_participant_or_a_taskforce_member() -> None:
    for data in (
        perspective(KL, StakeholderGroup.POLITICS, {1: 50}),
        TaskforceMemberAdded(
            member_id=ref("tf"),
            ags=KL,
            role=TaskforceRole.LEAD,
            sector=TaskforceSector.ADMINISTRATION,
        ),
        scored(KL, {1: 50.0}),
    ):
        envelope = new_envelope(data, source="/test", municipality=KL)
        assert digest_of(envelope, municipality_name="Kaiserslautern") is None


# --- properties of the statistics ---------------------------------------------------------

scores_lists = st.lists(
    st.integers(0, 1000).map(lambda tenths: tenths / 10), min_size=1, max_size=40
)


@settings(max_examples=200, deadline=None)
@given(scores_lists, st.randoms(use_true_random=False))
def test_quartiles_are_ordered_order_free_and_python_s_inclusive_quantiles(
    scores: list[float], shuffler: random.Random
) -> None:
    distribution = Distribution.of(scores)
    assert distribution is not None
    shuffled = scores[:]
    shuffler.shuffle(shuffled)

    assert Distribution.of(shuffled) == distribution
    assert distribution.lowest <= distribution.q1 <= distribution.median
    assert distribution.median <= distribution.q3 <= distribution.highest
    assert distribution.lowest <= distribution.mean <= distribution.highest
    assert (distribution.lowest, distribution.highest) == (min(scores), max(scores))
    if len(scores) >= 2:
        q1, median, q3 = statistics.quantiles(scores, n=4, method="inclusive")
        for ours, theirs in ((distribution.q1, q1), (distribution.median, median)):
            assert abs(ours - theirs) <= 0.05 + 1e-9
        assert abs(distribution.q3 - q3) <= 0.05 + 1e-9
    else:
        assert distribution.q1 == distribution.median == distribution.q3 == scores[0]


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text("0123456789", min_size=8, max_size=8), scores_lists.map(max)))
def test_ranks_put_the_best_first_and_ties_together(scores: dict[str, float]) -> None:
    ranked = ranks(scores)

    assert set(ranked) == set(scores)
    for ags, rank in ranked.items():
        assert 1 <= rank <= len(scores)
        assert rank == 1 + sum(1 for other in scores.values() if other > scores[ags])
        assert (rank == 1) == (scores[ags] == max(scores.values()))
    for a in scores:
        for b in scores:
            assert (ranked[a] < ranked[b]) == (scores[a] > scores[b])


def test_the_quick_digest_check_agrees_with_the_digests_for_every_contract() -> None:
    """`has_digest` (what a batch uses to pick the events to name) says yes exactly for
    the events `digest_of` makes a digest of."""
    from tests.contracts.test_envelope import sample_events
    from wok_reporting.digests import has_digest

    checked = 0
    for data in sample_events():
        if not hasattr(data, "ags"):
            continue
        envelope = new_envelope(data, source="/test", municipality=data.ags)
        has = digest_of(envelope, municipality_name="Kaiserslautern") is not None
        assert has_digest(envelope) == has, type(data).__name__
        checked += has
    assert checked >= 9
