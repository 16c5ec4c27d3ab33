"""The versioned questionnaire catalogue: data files in wok_assessment/catalogues, read here.

A catalogue version is immutable once published: a self-check stores the version it was
started under and is always scored with that version, so publishing a new one (a new file)
never changes an existing result. The model below validates a file completely when it is
loaded, so a broken catalogue stops the service at start-up, not a municipality mid-check.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from fractions import Fraction
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from wok_contracts.events.assessment import AssessmentLevel

DONT_KNOW = "dont_know"
BANDED_LEVELS = (
    AssessmentLevel.BEGINNING,
    AssessmentLevel.DEVELOPING,
    AssessmentLevel.ADVANCED,
    AssessmentLevel.ESTABLISHED,
)


class Text(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    de: str = Field(min_length=1)
    en: str = Field(min_length=1)

    def in_language(self, language: str) -> str:
        return self.en if language == "en" else self.de


class ScaleStep(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    value: str = Field(pattern=r"^[a-z_]+$")
    points: int = Field(ge=0)
    label: Text


class DontKnow(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    value: str = DONT_KNOW
    label: Text


class LevelBand(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    level: AssessmentLevel
    from_score: float = Field(ge=0, le=100)
    label: Text


class InsufficientData(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    label: Text
    suggestion: Text


class Question(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=r"^f[1-7]\.q[0-9]{2}$")
    weight: int = Field(ge=1, le=10)
    text: Text
    topic: str | None = None


class FieldOfAction(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    number: int = Field(ge=1, le=7)
    name: Text
    questions: tuple[Question, ...] = Field(min_length=8)
    suggestions: dict[AssessmentLevel, Text]

    @model_validator(mode="after")
    def _complete(self) -> FieldOfAction:
        for question in self.questions:
            if not question.id.startswith(f"f{self.number}."):
                raise ValueError(f"question {question.id} is filed under field {self.number}")
        missing = [level.value for level in BANDED_LEVELS if level not in self.suggestions]
        if missing:
            raise ValueError(f"field {self.number} has no suggestion for {missing}")
        return self


class Catalogue(BaseModel):
    """One version of the self-check: fields, questions, the scale, bands and suggestions."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: str = Field(pattern=r"^[0-9]{4}\.[0-9]+$")
    published_on: str
    title: Text
    scale: tuple[ScaleStep, ...] = Field(min_length=2)
    dont_know: DontKnow
    minimum_coverage: float = Field(gt=0, le=1)
    minimum_fields_for_overall: int = Field(ge=1, le=7)
    levels: tuple[LevelBand, ...]
    insufficient_data: InsufficientData
    strength_from_score: float = Field(ge=0, le=100)
    deficit_below_score: float = Field(ge=0, le=100)
    fields: tuple[FieldOfAction, ...] = Field(min_length=7, max_length=7)

    @model_validator(mode="after")
    def _consistent(self) -> Catalogue:
        if [field.number for field in self.fields] != list(range(1, 8)):
            raise ValueError("the catalogue must list the fields 1 to 7 in order")
        ids = [question.id for field in self.fields for question in field.questions]
        if len(ids) != len(set(ids)):
            raise ValueError("question ids must be unique")
        points = [step.points for step in self.scale]
        if points != sorted(set(points)) or points[0] != 0:
            raise ValueError("scale points must start at 0 and strictly increase")
        values = [step.value for step in self.scale]
        if self.dont_know.value in values or len(set(values)) != len(values):
            raise ValueError("scale values must be unique and differ from 'don't know'")
        if tuple(band.level for band in self.levels) != BANDED_LEVELS:
            raise ValueError(f"levels must be {[level.value for level in BANDED_LEVELS]}")
        starts = [band.from_score for band in self.levels]
        if starts[0] != 0 or starts != sorted(set(starts)):
            raise ValueError("level bands must start at 0 and strictly increase")
        return self

    # -- lookups used by scoring ---------------------------------------------------------

    @property
    def max_points(self) -> int:
        return self.scale[-1].points

    @property
    def points(self) -> dict[str, int]:
        return {step.value: step.points for step in self.scale}

    @property
    def answer_values(self) -> tuple[str, ...]:
        return (*(step.value for step in self.scale), self.dont_know.value)

    @property
    def minimum_coverage_exact(self) -> Fraction:
        return Fraction(str(self.minimum_coverage))

    def field(self, number: int) -> FieldOfAction:
        return self.fields[number - 1]

    def question_ids(self) -> tuple[str, ...]:
        return tuple(question.id for field in self.fields for question in field.questions)

    def question_count(self) -> int:
        return sum(len(field.questions) for field in self.fields)

    def band_label(self, level: AssessmentLevel) -> Text:
        if level is AssessmentLevel.INSUFFICIENT_DATA:
            return self.insufficient_data.label
        return next(band.label for band in self.levels if band.level is level)

    def check_answers(self, answers: Mapping[str, str | None]) -> dict[str, str]:
        """Problems with given answers, by question id (empty when all are acceptable)."""
        known = set(self.question_ids())
        allowed = self.answer_values
        problems: dict[str, str] = {}
        for question_id, value in answers.items():
            if question_id not in known:
                problems[question_id] = (
                    f"no question {question_id!r} in catalogue version {self.version}"
                )
            elif value is not None and value not in allowed:
                problems[question_id] = f"answer must be one of {list(allowed)}, not {value!r}"
        return problems


class UnknownCatalogueVersion(LookupError):
    pass


class Catalogues:
    """Every published version; `current` is the newest, which new self-checks start under."""

    def __init__(self, versions: Iterable[Catalogue]) -> None:
        self._versions = {catalogue.version: catalogue for catalogue in versions}
        if not self._versions:
            raise ValueError("at least one catalogue version is needed")

    @property
    def current(self) -> Catalogue:
        newest = max(self._versions, key=lambda version: tuple(map(int, version.split("."))))
        return self._versions[newest]

    @property
    def versions(self) -> list[str]:
        return sorted(self._versions, key=lambda version: tuple(map(int, version.split("."))))

    def get(self, version: str) -> Catalogue:
        try:
            return self._versions[version]
        except KeyError:
            raise UnknownCatalogueVersion(
                f"no catalogue version {version!r}; published: {self.versions}"
            ) from None


def parse_catalogue(document: Mapping[str, Any]) -> Catalogue:
    return Catalogue.model_validate(document)


def load_catalogues(directory: Path | None = None) -> Catalogues:
    """Read every `*.json` in `directory` (default: the files shipped in the package)."""
    if directory is None:
        folder = resources.files("wok_assessment") / "catalogues"
        texts = [
            entry.read_text("utf-8") for entry in folder.iterdir() if entry.name.endswith(".json")
        ]
    else:
        texts = [path.read_text("utf-8") for path in sorted(directory.glob("*.json"))]
    return Catalogues(parse_catalogue(json.loads(text)) for text in texts)
