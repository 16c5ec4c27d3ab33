"""Peer matchmaking rules (wok_exchange.domain): plain functions, examples and properties."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from wok_contracts.events.assessment import MeasureStatus
from wok_contracts.events.exchange import PeerActivityKind, PeerReason, PeerRole
from wok_exchange.domain import (
    IMPROVEMENT_POINTS,
    Activity,
    Measure,
    PairTold,
    Scoring,
    feed,
    match,
    measure_activity,
    pair_announcements,
    profiles,
    recipients_of,
    suggestions_for,
)

KAISERSLAUTERN = "07312000"
MAINZ = "07315000"
TRIER = "07211000"
T0 = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)


def scoring(
    ags: str,
    *,
    sequence: int = 1,
    strengths: set[int] = frozenset(),  # type: ignore[assignment]
    deficits: set[int] = frozenset(),  # type: ignore[assignment]
    scores: dict[int, float | None] | None = None,
) -> Scoring:
    return Scoring(
        self_check_id=f"sc-{ags}-{sequence}",
        ags=ags,
        sequence=sequence,
        scores=scores or {field: 50.0 for field in range(1, 8)},
        strengths=frozenset(strengths),
        deficits=frozenset(deficits),
    )


def measure(ags: str, field: int, *, status: MeasureStatus = MeasureStatus.RUNNING) -> Measure:
    return Measure(
        measure_id=f"m-{ags}-{field}-{status.value}",
        ags=ags,
        field=field,
        title="Interkulturelle Schulung der Verwaltung",
        status=status,
        occurred_at=T0,
    )


def test_a_deficit_here_and_a_strength_there_pair_the_two_with_the_measures_that_helped() -> None:
    known = profiles(
        [scoring(KAISERSLAUTERN, deficits={2}), scoring(MAINZ, strengths={2}, deficits={5})]
    )
    helped = measure(MAINZ, 2)
    dropped = measure(MAINZ, 2, status=MeasureStatus.DROPPED)
    elsewhere = measure(MAINZ, 3)

    [suggestion] = match(known, [helped, dropped, elsewhere])

    assert (suggestion.field, suggestion.needing, suggestion.offering) == (2, KAISERSLAUTERN, MAINZ)
    assert suggestion.reason is PeerReason.STRENGTH
    assert suggestion.measures == (helped,)
    assert suggestion.suggestion_id == f"2:{KAISERSLAUTERN}:{MAINZ}"
    assert suggestion.role_of(KAISERSLAUTERN) is PeerRole.LEARNS
    assert suggestion.role_of(MAINZ) is PeerRole.SHARES
    assert suggestions_for(KAISERSLAUTERN, [suggestion]) == [suggestion]
    assert suggestions_for(MAINZ, [suggestion]) == [suggestion]
    assert suggestions_for(TRIER, [suggestion]) == []


def test_a_clear_improvement_between_two_scorings_counts_as_help() -> None:
    before = {field: 30.0 for field in range(1, 8)}
    after = {**before, 6: 30.0 + IMPROVEMENT_POINTS, 7: 30.0 + IMPROVEMENT_POINTS - 1}
    known = profiles(
        [
            scoring(KAISERSLAUTERN, deficits={6, 7}),
            scoring(TRIER, sequence=1, scores=before),
            scoring(TRIER, sequence=2, scores=after),
        ]
    )
    [suggestion] = match(known)
    assert (suggestion.field, suggestion.offering) == (6, TRIER)
    assert suggestion.reason is PeerReason.IMPROVEMENT
    assert suggestion.improvement == IMPROVEMENT_POINTS


def test_only_the_latest_scoring_counts() -> None:
    known = profiles(
        [
            scoring(KAISERSLAUTERN, sequence=2, deficits=set()),
            scoring(KAISERSLAUTERN, sequence=1, deficits={4}),
            scoring(MAINZ, strengths={4}),
        ]
    )
    assert match(known) == []


def test_a_measure_reaches_the_feeds_of_the_municipalities_lacking_its_field() -> None:
    known = profiles(
        [
            scoring(KAISERSLAUTERN, deficits={2}),
            scoring(TRIER, deficits={3}),
            scoring(MAINZ, strengths={2}),
        ]
    )
    planned = measure_activity(
        measure(MAINZ, 2),
        source_event_id="e-1",
        kind=PeerActivityKind.MEASURE_PLANNED,
        name="Mainz",
    )
    assert "Mainz plant die Maßnahme" in planned.text_de and "in the field" in planned.text_en
    [item] = recipients_of(planned, known=known, suggestions=match(known))
    assert (item.recipient, item.fields, item.item_id) == (
        KAISERSLAUTERN,
        {2},
        f"{KAISERSLAUTERN}:e-1",
    )

    digest = Activity(
        source_event_id="e-2",
        ags=MAINZ,
        kind=PeerActivityKind.ACTIVITY,
        text_de="Mainz hat eine Dialogveranstaltung angesetzt.",
        text_en="Mainz scheduled a dialogue event.",
        occurred_at=T0 + timedelta(days=1),
    )
    # a dialogue event of Mainz matters to Kaiserslautern, which is to learn from Mainz
    items = feed(
        KAISERSLAUTERN, known=known, activities=[planned, digest], suggestions=match(known)
    )
    assert [i.activity.source_event_id for i in items] == ["e-2", "e-1"]  # newest first
    assert feed(TRIER, known=known, activities=[planned, digest], suggestions=match(known)) == []
    assert feed(MAINZ, known=known, activities=[planned, digest], suggestions=match(known)) == []


AGS = st.sampled_from([KAISERSLAUTERN, MAINZ, TRIER, "05315000", "09162000", "14612000"])
FIELDS = st.frozensets(st.integers(1, 7), max_size=4)
# around the thresholds and the improvement step
SCORES = st.sampled_from([None, 0.0, 20.0, 34.9, 35.0, 49.9, 50.0, 64.9, 75.0, 90.0, 100.0])


@st.composite
def scorings(draw: st.DrawFn) -> list[Scoring]:
    found = []
    for ags in draw(st.lists(AGS, unique=True, max_size=6)):
        for sequence in range(1, draw(st.integers(1, 3)) + 1):
            deficits = draw(FIELDS)
            strengths = draw(FIELDS) - deficits
            scores = dict(
                zip(range(1, 8), draw(st.lists(SCORES, min_size=7, max_size=7)), strict=True)
            )
            found.append(
                scoring(
                    ags,
                    sequence=sequence,
                    strengths=strengths,
                    deficits=deficits,
                    scores=scores,
                )
            )
    return found


@settings(max_examples=100, deadline=None)
@given(scorings(), st.randoms(use_true_random=False))
def test_suggestions_are_symmetric_never_self_pairs_complete_and_order_independent(
    scored: list[Scoring], shuffler
) -> None:
    known = profiles(scored)
    suggestions = match(known)

    for suggestion in suggestions:
        assert suggestion.needing != suggestion.offering
        assert suggestion.field in known[suggestion.needing].deficits
        assert known[suggestion.offering].offer(suggestion.field) is not None
        # told to both: each side finds the same pair in its own view
        assert suggestion in suggestions_for(suggestion.needing, suggestions)
        assert suggestion in suggestions_for(suggestion.offering, suggestions)
    assert len({s.suggestion_id for s in suggestions}) == len(suggestions)

    # complete: every deficit meets every municipality that can help in the field
    expected = {
        (field, needing, offering)
        for needing, profile in known.items()
        for field in profile.deficits
        for offering, other in known.items()
        if offering != needing and other.offer(field) is not None
    }
    assert {(s.field, s.needing, s.offering) for s in suggestions} == expected

    # idempotent and order-independent: the same events again, or in another order, change nothing
    shuffled = list(scored)
    shuffler.shuffle(shuffled)
    assert match(profiles(shuffled + scored)) == suggestions
    assert match(known) == suggestions


@settings(max_examples=100, deadline=None)
@given(st.lists(scorings(), min_size=1, max_size=5))
def test_announcing_each_standing_in_turn_leaves_each_side_told_exactly_what_holds(
    standings: list[list[Scoring]],
) -> None:
    told: dict[tuple[str, str], PairTold] = {}
    used_ids: set[str] = set()
    for scored in standings:
        suggestions = match(profiles(scored))
        due = pair_announcements(suggestions, told.values())
        for announcement_id, suggestion, recipient in due.suggest:
            key = (suggestion.suggestion_id, recipient)
            before = told.get(key, PairTold(*key))
            told[key] = PairTold(*key, suggested=before.suggested + 1, withdrawn=before.withdrawn)
            used_ids.add(announcement_id)
        for announcement_id, before in due.withdraw:
            key = (before.suggestion_id, before.recipient)
            told[key] = PairTold(*key, suggested=before.suggested, withdrawn=before.withdrawn + 1)
            used_ids.add(announcement_id)

        holding = {key for key, t in told.items() if t.holds}
        wanted = {(s.suggestion_id, r) for s in suggestions for r in (s.needing, s.offering)}
        assert holding == wanted
        # nothing more to tell for the same standing
        again = pair_announcements(suggestions, told.values())
        assert again.suggest == [] and again.withdraw == []
    total = sum(t.suggested + t.withdrawn for t in told.values())
    assert len(used_ids) == total
