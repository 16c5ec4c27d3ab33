"""A self-check: a draft answered in several sittings, then submitted and scored once."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum

from wok_assessment.domain.catalogue import Catalogue
from wok_assessment.domain.scoring import Assessment, assess
from wok_contracts.events.assessment import (
    AssessmentScored,
    FieldScore,
    SelfCheckStarted,
    SelfCheckSubmitted,
)


class SelfCheckStatus(StrEnum):
    DRAFT = "draft"
    SUBMITTED = "submitted"


class NotADraft(Exception):
    """The self-check was submitted; its answers are final."""


class NothingAnswered(Exception):
    pass


class InvalidAnswers(ValueError):
    def __init__(self, problems: Mapping[str, str]) -> None:
        super().__init__("; ".join(f"{key}: {reason}" for key, reason in problems.items()))
        self.problems = dict(problems)


@dataclass(frozen=True)
class SelfCheck:
    id: str
    ags: str
    sequence: int
    catalogue_version: str
    status: SelfCheckStatus
    started_at: datetime
    answers: Mapping[str, str] = field(default_factory=dict)
    submitted_at: datetime | None = None
    revision: int = 0
    """Grows with every change of the answers; a submission scores exactly one revision."""

    @property
    def is_draft(self) -> bool:
        return self.status is SelfCheckStatus.DRAFT


def self_check_id(ags: str, sequence: int) -> str:
    """Readable and unique: the municipality's n-th self-check (one draft at a time)."""
    return f"{ags}-{sequence}"


def start_self_check(
    *, ags: str, latest: SelfCheck | None, catalogue: Catalogue, now: datetime
) -> tuple[SelfCheck, SelfCheckStarted]:
    """A new draft under the current catalogue, numbered after the municipality's latest."""
    sequence = 1 if latest is None else latest.sequence + 1
    draft = SelfCheck(
        id=self_check_id(ags, sequence),
        ags=ags,
        sequence=sequence,
        catalogue_version=catalogue.version,
        status=SelfCheckStatus.DRAFT,
        started_at=now,
    )
    event = SelfCheckStarted(
        self_check_id=draft.id, ags=ags, sequence=sequence, catalogue_version=catalogue.version
    )
    return draft, event


def checked_answers(
    catalogue: Catalogue, answers: Mapping[str, str | None]
) -> tuple[dict[str, str], list[str]]:
    """The answers to store and the question ids to clear (an answer of None clears it)."""
    problems = catalogue.check_answers(answers)
    if problems:
        raise InvalidAnswers(problems)
    to_set = {key: value for key, value in answers.items() if value is not None}
    to_clear = [key for key, value in answers.items() if value is None]
    return to_set, to_clear


def submit_self_check(
    draft: SelfCheck, catalogue: Catalogue, *, now: datetime
) -> tuple[SelfCheck, Assessment, list[SelfCheckSubmitted | AssessmentScored]]:
    if not draft.is_draft:
        raise NotADraft(f"self-check {draft.id} was already submitted")
    if catalogue.version != draft.catalogue_version:
        raise ValueError("a self-check is scored with the catalogue version it was started under")
    if not draft.answers:
        raise NothingAnswered("answer at least one question before submitting")
    assessment = assess(catalogue, draft.answers)
    submitted = replace(draft, status=SelfCheckStatus.SUBMITTED, submitted_at=now)
    events: list[SelfCheckSubmitted | AssessmentScored] = [
        SelfCheckSubmitted(
            self_check_id=draft.id,
            ags=draft.ags,
            sequence=draft.sequence,
            catalogue_version=draft.catalogue_version,
            questions=assessment.questions,
            answered=assessment.answered,
            dont_know=assessment.dont_know,
            submitted_at=now,
        ),
        scored_event(submitted, assessment),
    ]
    return submitted, assessment, events


def scored_event(self_check: SelfCheck, assessment: Assessment) -> AssessmentScored:
    return AssessmentScored(
        self_check_id=self_check.id,
        ags=self_check.ags,
        sequence=self_check.sequence,
        catalogue_version=assessment.catalogue_version,
        fields=[
            FieldScore(
                field=field.field,
                score=field.score,
                level=field.level,
                coverage=field.coverage,
                answered=field.answered,
                questions=field.questions,
            )
            for field in assessment.fields
        ],
        overall=assessment.overall,
        overall_level=assessment.overall_level,
        strengths=list(assessment.strengths),
        deficits=list(assessment.deficits),
    )
