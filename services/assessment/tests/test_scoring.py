"""The catalogue as shipped, and the scoring rules (docs/assessment-scoring.md) as properties."""

from __future__ import annotations

import json
import statistics
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wok_assessment.domain import FIELDS_OF_ACTION
from wok_assessment.domain.benchmark import benchmark, quantile
from wok_assessment.domain.catalogue import Catalogue, Catalogues, load_catalogues, parse_catalogue
from wok_assessment.domain.scoring import assess, progress, score_field
from wok_contracts.events.assessment import AssessmentLevel

CATALOGUE = load_catalogues().current
SCALE = [step.value for step in CATALOGUE.scale]
QUESTION_IDS = CATALOGUE.question_ids()
CATALOGUE_DIR = Path(__file__).resolve().parents[1] / "wok_assessment" / "catalogues"


def answers_strategy(values: list[str] | None = None) -> Any:
    return st.dictionaries(
        st.sampled_from(QUESTION_IDS), st.sampled_from(values or list(CATALOGUE.answer_values))
    )


def test_the_shipped_catalogue_has_the_seven_official_fields_in_german_and_english() -> None:
    assert CATALOGUE.version == "2026.1"
    assert [f.name.de for f in CATALOGUE.fields] == [f.name_de for f in FIELDS_OF_ACTION]
    for field in CATALOGUE.fields:
        assert len(field.questions) >= 8
        assert all(q.text.de != q.text.en for q in field.questions)
        assert set(field.suggestions) == {
            AssessmentLevel.BEGINNING,
            AssessmentLevel.DEVELOPING,
            AssessmentLevel.ADVANCED,
            AssessmentLevel.ESTABLISHED,
        }
    topics = {q.topic for q in CATALOGUE.field(3).questions}
    assert topics >= {
        "education",
        "language",
        "work_and_training",
        "housing",
        "health_and_care",
        "transport",
        "culture",
        "sport",
        "safety_and_justice",
    }
    assert SCALE == ["not_in_place", "planned", "partly", "fully"]
    assert CATALOGUE.dont_know.label.en == "don't know"


def test_a_broken_catalogue_file_is_refused_naming_the_problem() -> None:
    document = json.loads((CATALOGUE_DIR / "2026.1.json").read_text())
    document["fields"][1]["questions"][0]["id"] = "f1.q01"
    with pytest.raises(ValueError, match=r"filed under field 2"):
        parse_catalogue(document)
    document = json.loads((CATALOGUE_DIR / "2026.1.json").read_text())
    del document["fields"][4]["suggestions"]["advanced"]
    with pytest.raises(ValueError, match=r"no suggestion for \['advanced'\]"):
        parse_catalogue(document)


def test_the_worked_example_of_the_documentation() -> None:
    answers = {
        "f1.q01": "fully",  # weight 3
        "f1.q02": "partly",  # weight 3
        "f1.q03": "planned",  # weight 2
        "f1.q04": "not_in_place",  # weight 2
        "f1.q05": "dont_know",
    }
    field = score_field(CATALOGUE, 1, answers)
    # 100 × (3·3 + 3·2 + 2·1 + 2·0) / (3 × (3+3+2+2)) = 1700/30 = 56.67
    assert field.score == 56.7
    assert field.coverage == 0.5
    assert field.level is AssessmentLevel.ADVANCED
    assert (field.answered, field.dont_know, field.questions) == (4, 1, 8)
    assert field.open_points == ("f1.q03", "f1.q04")
    assert field.suggestion == CATALOGUE.field(1).suggestions[AssessmentLevel.ADVANCED]

    fewer = score_field(CATALOGUE, 1, {k: v for k, v in answers.items() if k != "f1.q04"})
    assert fewer.score == 70.8  # 1700/24 = 70.83, but 3 of 8 answered is too little
    assert fewer.level is AssessmentLevel.INSUFFICIENT_DATA
    assert fewer.suggestion == CATALOGUE.insufficient_data.suggestion


def test_the_overall_index_needs_four_fields_and_names_strengths_and_deficits() -> None:
    def field_answers(number: int, value: str) -> dict[str, str]:
        return {q.id: value for q in CATALOGUE.field(number).questions}

    three = field_answers(1, "fully") | field_answers(2, "planned") | field_answers(3, "partly")
    assessment = assess(CATALOGUE, three)
    assert assessment.overall is None
    assert assessment.overall_level is AssessmentLevel.INSUFFICIENT_DATA

    four = three | field_answers(6, "not_in_place")
    assessment = assess(CATALOGUE, four)
    # (100 + 33.3 + 66.7 + 0) / 4 = 50.0
    assert assessment.overall == 50.0
    assert assessment.overall_level is AssessmentLevel.ADVANCED
    assert assessment.strengths == (1,)
    assert assessment.deficits == (6, 2)
    assert [f.level for f in assessment.fields] == [
        AssessmentLevel.ESTABLISHED,
        AssessmentLevel.DEVELOPING,
        AssessmentLevel.ADVANCED,
        AssessmentLevel.INSUFFICIENT_DATA,
        AssessmentLevel.INSUFFICIENT_DATA,
        AssessmentLevel.BEGINNING,
        AssessmentLevel.INSUFFICIENT_DATA,
    ]


def test_a_new_version_scores_the_same_answers_by_its_own_weights() -> None:
    document = json.loads((CATALOGUE_DIR / "2026.1.json").read_text())
    document["version"] = "2027.1"
    document["fields"][0]["questions"][3]["weight"] = 10  # f1.q04 now dominates
    catalogues = Catalogues([CATALOGUE, parse_catalogue(document)])
    answers = {"f1.q01": "fully", "f1.q02": "fully", "f1.q03": "fully", "f1.q04": "not_in_place"}

    assert catalogues.current.version == "2027.1"
    assert score_field(catalogues.get("2026.1"), 1, answers).score == 80.0
    assert score_field(catalogues.get("2027.1"), 1, answers).score == 44.4


@settings(max_examples=200, deadline=None)
@given(answers=answers_strategy())
def test_scores_and_coverage_are_bounded(answers: dict[str, str]) -> None:
    assessment = assess(CATALOGUE, answers)
    for field in assessment.fields:
        assert field.score is None or 0 <= field.score <= 100
        assert 0 <= field.coverage <= 1
        assert field.answered + field.dont_know <= field.questions
    assert assessment.overall is None or 0 <= assessment.overall <= 100


@settings(max_examples=200, deadline=None)
@given(answers=answers_strategy(), question=st.sampled_from(QUESTION_IDS), data=st.data())
def test_a_better_answer_never_lowers_a_score(
    answers: dict[str, str], question: str, data: st.DataObject
) -> None:
    lower = data.draw(st.sampled_from(SCALE[:-1]))
    higher = data.draw(st.sampled_from(SCALE[SCALE.index(lower) + 1 :]))
    before = assess(CATALOGUE, answers | {question: lower})
    after = assess(CATALOGUE, answers | {question: higher})
    for old, new in zip(before.fields, after.fields, strict=True):
        if old.field != int(question[1]):
            assert new == old
            continue
        assert new.score is not None and old.score is not None
        assert new.score >= old.score
        assert new.coverage == old.coverage
    if before.overall is not None:
        assert after.overall is not None and after.overall >= before.overall


@settings(max_examples=200, deadline=None)
@given(answers=answers_strategy(), question=st.sampled_from(QUESTION_IDS))
def test_skipping_is_not_no_and_dont_know_is_skipping(
    answers: dict[str, str], question: str
) -> None:
    skipped = {k: v for k, v in answers.items() if k != question}
    not_known = skipped | {question: "dont_know"}
    answered_no = skipped | {question: "not_in_place"}
    number = int(question[1])

    as_skipped = score_field(CATALOGUE, number, skipped)
    as_dont_know = score_field(CATALOGUE, number, not_known)
    assert as_dont_know.score == as_skipped.score
    assert as_dont_know.level == as_skipped.level
    assert as_dont_know.coverage == as_skipped.coverage
    as_no = score_field(CATALOGUE, number, answered_no)
    if as_skipped.score is not None:
        assert as_no.score is not None and as_no.score <= as_skipped.score


@settings(max_examples=100, deadline=None)
@given(answered=st.sets(st.sampled_from(QUESTION_IDS), min_size=1))
def test_only_full_answers_score_100_however_much_is_skipped(answered: set[str]) -> None:
    assessment = assess(CATALOGUE, dict.fromkeys(answered, "fully"))
    for field in assessment.fields:
        assert field.score == (100.0 if field.answered else None)


@settings(max_examples=100, deadline=None)
@given(answers=answers_strategy())
def test_the_order_answers_were_given_in_does_not_matter(answers: dict[str, str]) -> None:
    reordered = dict(reversed(list(answers.items())))
    assert assess(CATALOGUE, answers) == assess(CATALOGUE, reordered)


def test_progress_compares_each_field_with_the_previous_self_check() -> None:
    field_one = [q.id for q in CATALOGUE.field(1).questions]
    before = assess(CATALOGUE, dict.fromkeys(field_one, "planned"))
    after = assess(CATALOGUE, dict.fromkeys(field_one, "partly") | {"f2.q01": "fully"})
    changes = progress(after, before)
    assert (changes[0].previous_score, changes[0].score, changes[0].change) == (33.3, 66.7, 33.4)
    assert changes[0].level is AssessmentLevel.ADVANCED
    assert changes[1].previous_score is None and changes[1].change is None


def test_catalogue_type_is_exported() -> None:
    assert isinstance(CATALOGUE, Catalogue)


@settings(max_examples=200, deadline=None)
@given(
    scores=st.lists(
        st.integers(min_value=0, max_value=1000).map(lambda tenths: tenths / 10), min_size=2
    )
)
def test_quartiles_agree_with_the_standard_library_and_are_ordered(scores: list[float]) -> None:
    ordered = sorted(scores)
    ours = [quantile(ordered, Fraction(k, 4)) for k in (1, 2, 3)]
    reference = statistics.quantiles(ordered, n=4, method="inclusive")
    assert all(abs(a - b) <= 0.05 + 1e-9 for a, b in zip(ours, reference, strict=True))
    assert ordered[0] <= ours[0] <= ours[1] <= ours[2] <= ordered[-1]


@settings(max_examples=100, deadline=None)
@given(
    fields=st.lists(
        st.dictionaries(st.sampled_from(QUESTION_IDS[:8]), st.sampled_from(SCALE)),
        min_size=1,
        max_size=12,
    )
)
def test_every_ranked_municipality_has_a_rank_among_the_participants(
    fields: list[dict[str, str]],
) -> None:
    latest = {f"07{index:06d}": assess(CATALOGUE, answers) for index, answers in enumerate(fields)}
    for ags in latest:
        first = benchmark(latest, ags)[0]
        if first.rank is not None:
            assert 1 <= first.rank <= first.participants
            assert first.band is not None
            better = [
                a
                for a in latest.values()
                if a.field(1).sufficient and (a.field(1).score or 0) > (first.score or 0)
            ]
            assert first.rank == 1 + len(better)
