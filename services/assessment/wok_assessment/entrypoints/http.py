"""HTTP routes of the assessment service: the wire translated into handler calls; domain
errors become clear 4xx once, in `install_error_handlers`.

No `from __future__ import annotations` here: FastAPI resolves the dependency aliases
defined inside `build_router` at runtime.
"""

import time
from datetime import date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Path, Query, Response, status
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ConfigDict, Field

from wok_assessment.domain import FIELDS_OF_ACTION
from wok_assessment.domain.benchmark import BenchmarkBand
from wok_assessment.domain.catalogue import Text, UnknownCatalogueVersion
from wok_assessment.domain.measures import InvalidMeasure, InvalidTransition, Measure
from wok_assessment.domain.self_check import (
    InvalidAnswers,
    NotADraft,
    NothingAnswered,
    SelfCheck,
)
from wok_assessment.handlers import AssessmentHandlers, Conflict, NotFound, SelfCheckResult
from wok_assessment.report import render_report
from wok_assessment.report_pdf import render_report_pdf
from wok_contracts import Ags
from wok_contracts.events.assessment import AssessmentLevel, MeasureStatus, StakeholderGroup
from wok_runtime.http_errors import install_error_handlers as install_domain_errors
from wok_runtime.http_errors import problem
from wok_runtime.municipal_keys import (
    BearerCredentials,
    KeyDirectory,
    forbid_other_municipality,
    key_holder_dependency,
    municipality_key_dependency,
)
from wok_runtime.report_links import ReportLink, report_link_problem

FieldNumber = Annotated[int, Field(ge=1, le=7, description="Field of action, 1-7")]
Rating = Annotated[int, Field(ge=0, le=100)]


class FieldOfActionPublic(BaseModel):
    number: int
    name_de: str
    name_en: str


class MunicipalityPublic(BaseModel):
    ags: str
    name: str
    land: str


class SelfCheckPublic(BaseModel):
    id: str
    ags: str
    sequence: int
    status: str
    catalogue_version: str
    started_at: datetime
    submitted_at: datetime | None
    answers: dict[str, str] = Field(description="Answer by question id; skipped ones are absent")
    questions: int
    given: int = Field(description="Questions with an answer, 'don't know' included")

    @classmethod
    def of(cls, self_check: SelfCheck, *, questions: int) -> "SelfCheckPublic":
        return cls(
            id=self_check.id,
            ags=self_check.ags,
            sequence=self_check.sequence,
            status=self_check.status.value,
            catalogue_version=self_check.catalogue_version,
            started_at=self_check.started_at,
            submitted_at=self_check.submitted_at,
            answers=dict(sorted(self_check.answers.items())),
            questions=questions,
            given=len(self_check.answers),
        )


class AnswersChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    answers: dict[str, str | None] = Field(
        description=(
            "Answer by question id: not_in_place, planned, partly, fully or dont_know; "
            "null clears an answer (PATCH only)"
        ),
        examples=[{"f1.q01": "partly", "f3.q02": "dont_know"}],
    )


class LocalText(BaseModel):
    de: str
    en: str

    @classmethod
    def of(cls, text: Text) -> "LocalText":
        return cls(de=text.de, en=text.en)


class OpenPoint(BaseModel):
    question_id: str
    text: LocalText
    answer: str


class FieldResult(BaseModel):
    field: int
    name: LocalText
    score: float | None
    level: AssessmentLevel
    level_label: LocalText
    coverage: float
    answered: int
    dont_know: int
    questions: int
    suggestion: LocalText
    open_points: list[OpenPoint]


class FieldChange(BaseModel):
    field: int
    previous_score: float | None
    score: float | None
    change: float | None
    previous_level: AssessmentLevel
    level: AssessmentLevel


class Progress(BaseModel):
    previous_self_check_id: str
    previous_submitted_at: datetime | None
    previous_catalogue_version: str
    fields: list[FieldChange]


class ResultPublic(BaseModel):
    self_check_id: str
    ags: str
    sequence: int
    status: str
    final: bool = Field(description="False for a draft: a preview that changes with the answers")
    catalogue_version: str
    submitted_at: datetime | None
    overall: float | None
    overall_level: AssessmentLevel
    strengths: list[int]
    deficits: list[int]
    fields: list[FieldResult]
    progress: Progress | None

    @classmethod
    def of(cls, result: SelfCheckResult) -> "ResultPublic":
        catalogue, assessment = result.catalogue, result.assessment
        texts = {q.id: q.text for f in catalogue.fields for q in f.questions}
        fields = [
            FieldResult(
                field=f.field,
                name=LocalText.of(catalogue.field(f.field).name),
                score=f.score,
                level=f.level,
                level_label=LocalText.of(catalogue.band_label(f.level)),
                coverage=f.coverage,
                answered=f.answered,
                dont_know=f.dont_know,
                questions=f.questions,
                suggestion=LocalText.of(f.suggestion),
                open_points=[
                    OpenPoint(
                        question_id=q,
                        text=LocalText.of(texts[q]),
                        answer=result.self_check.answers[q],
                    )
                    for q in f.open_points
                ],
            )
            for f in assessment.fields
        ]
        progress = None
        if result.previous is not None and result.progress is not None:
            progress = Progress(
                previous_self_check_id=result.previous.id,
                previous_submitted_at=result.previous.submitted_at,
                previous_catalogue_version=result.previous.catalogue_version,
                fields=[FieldChange(**vars(change)) for change in result.progress],
            )
        self_check = result.self_check
        return cls(
            self_check_id=self_check.id,
            ags=self_check.ags,
            sequence=self_check.sequence,
            status=self_check.status.value,
            final=not self_check.is_draft,
            catalogue_version=catalogue.version,
            submitted_at=self_check.submitted_at,
            overall=assessment.overall,
            overall_level=assessment.overall_level,
            strengths=list(assessment.strengths),
            deficits=list(assessment.deficits),
            fields=fields,
            progress=progress,
        )


class FieldBenchmarkPublic(BaseModel):
    field: int
    participants: int = Field(description="Municipalities with sufficient data in this field")
    score: float | None
    rank: int | None
    lowest: float | None
    q1: float | None
    median: float | None
    q3: float | None
    highest: float | None
    band: BenchmarkBand | None


class BenchmarkPublic(BaseModel):
    ags: str
    fields: list[FieldBenchmarkPublic]


class PerspectiveCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    workshop: str = Field(min_length=1, max_length=100, examples=["2026-05 Auftakt"])
    stakeholder_group: StakeholderGroup
    ratings: dict[FieldNumber, Rating] = Field(
        min_length=1,
        max_length=7,
        description="Rating 0-100 by field number; fields not rated are left out",
        examples=[{"1": 70, "6": 40}],
    )


class PerspectiveRecorded(BaseModel):
    id: str
    ags: str
    workshop: str
    stakeholder_group: StakeholderGroup
    ratings: dict[int, int]


class GroupViewPublic(BaseModel):
    stakeholder_group: StakeholderGroup
    participants: int = Field(description="Ratings the group gave this field")
    counted: int = Field(
        description="Ratings in the mean: only from workshops where the group gave at least "
        "min_group_size ratings of the field"
    )
    too_few_ratings: bool = Field(description="True: no mean is shown, to protect individuals")
    mean: float | None
    gap: float | None = Field(description="Mean rating minus the self-check score")


class FieldPerspectivesPublic(BaseModel):
    field: int
    self_check_score: float | None
    participants: int
    counted: int = Field(description="Ratings in the mean of everyone (shown groups only)")
    mean: float | None
    groups: list[GroupViewPublic]
    widest_gap: StakeholderGroup | None


class PerspectivesPublic(BaseModel):
    ags: str
    workshop: str | None
    self_check_id: str | None = Field(description="The submitted self-check compared against")
    min_group_size: int = Field(
        description="Fewer ratings of a field by one group in one workshop show no mean"
    )
    fields: list[FieldPerspectivesPublic]


class MeasureCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    field: FieldNumber
    title: str = Field(min_length=1, max_length=300)
    owner_role: str = Field(
        min_length=1, max_length=120, description="A role (e.g. 'Integrationsbüro'), not a person"
    )
    starts_on: date | None = None
    due_on: date | None = None


class MeasureStatusChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: MeasureStatus


class MeasurePublic(BaseModel):
    id: str
    ags: str
    field: int
    title: str
    owner_role: str
    status: MeasureStatus
    starts_on: date | None
    due_on: date | None
    status_changed_on: date

    @classmethod
    def of(cls, measure: Measure) -> "MeasurePublic":
        return cls(**vars(measure))


def _unprocessable(problems: dict[str, str], *, prefix: tuple[str, ...]) -> HTTPException:
    """A 422 shaped like FastAPI's own, so clients read one format."""
    return HTTPException(
        status.HTTP_422_UNPROCESSABLE_CONTENT,
        detail=[
            {"loc": [*prefix, key], "msg": reason, "type": "value_error"}
            for key, reason in problems.items()
        ],
    )


def _errors(error: Exception) -> HTTPException:
    if isinstance(error, NotFound | UnknownCatalogueVersion):
        return HTTPException(status.HTTP_404_NOT_FOUND, detail=str(error))
    if isinstance(error, InvalidAnswers):
        return _unprocessable(error.problems, prefix=("body", "answers"))
    if isinstance(error, InvalidMeasure):
        return _unprocessable({error.field: error.reason}, prefix=("body",))
    if isinstance(error, NothingAnswered):
        return _unprocessable({"answers": str(error)}, prefix=())
    if isinstance(error, Conflict | NotADraft | InvalidTransition):
        return HTTPException(status.HTTP_409_CONFLICT, detail=str(error))
    raise error


DOMAIN_ERRORS: tuple[type[Exception], ...] = (
    NotFound,
    UnknownCatalogueVersion,
    InvalidAnswers,
    InvalidMeasure,
    NothingAnswered,
    Conflict,
    NotADraft,
    InvalidTransition,
)


def install_error_handlers(app: FastAPI) -> None:
    """Domain errors become their 4xx once, for every route (see `_errors`)."""
    install_domain_errors(app, errors=DOMAIN_ERRORS, to_http=_errors)


# What any route may answer besides its own responses (documented once for all of them).
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: problem("The body could not be read (not UTF-8 JSON)"),
    401: problem("No key, or an unknown or revoked one"),
    403: problem("Another municipality's key (or, for a report, a changed or expired link)"),
    404: problem("No such self-check, measure, municipality or catalogue version"),
    409: problem("Not possible in the current state (e.g. the self-check was submitted)"),
}


def report_reader_dependency(keys: KeyDirectory, *, service_key: str) -> Any:
    """Who may read a field report: the municipality's key, or a signed link from the
    "scored" mail (`expires` and `signature`, see `wok_runtime.report_links`) for that
    municipality until it expires. Answers the link to carry on to the PDF, if any."""
    key_holder = key_holder_dependency(keys)

    async def report_reader(
        ags: Annotated[Ags, Path(description="AGS of the municipality, e.g. 07312000")],
        credentials: BearerCredentials,
        expires: Annotated[
            int | None, Query(ge=0, description="From a signed report link: its expiry")
        ] = None,
        signature: Annotated[
            str | None,
            Query(pattern="^[0-9a-f]{64}$", description="From a signed report link"),
        ] = None,
    ) -> ReportLink | None:
        if expires is None and signature is None:
            forbid_other_municipality(key_ags=await key_holder(credentials), ags=ags)
            return None
        if expires is None or signature is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                detail="a report link needs both `expires` and `signature`",
            )
        refused = report_link_problem(
            service_key=service_key,
            ags=ags,
            expires=expires,
            signature=signature,
            now=time.time(),
        )
        if refused is not None:
            raise HTTPException(status.HTTP_403_FORBIDDEN, detail=refused)
        return ReportLink(expires, signature)

    return report_reader


def build_router(
    handlers: AssessmentHandlers, keys: KeyDirectory, *, service_key: str
) -> APIRouter:
    router = APIRouter(responses=ERROR_RESPONSES)
    OwnMunicipality = Annotated[str, Depends(municipality_key_dependency(keys))]
    KeyHolder = Annotated[str, Depends(key_holder_dependency(keys))]
    ReportLanguage = Annotated[str, Query(pattern="^(de|en)$", description="de or en")]
    ReportReader = Annotated[
        ReportLink | None, Depends(report_reader_dependency(keys, service_key=service_key))
    ]

    async def own_self_check(self_check_id: str, key_ags: KeyHolder) -> SelfCheck:
        self_check = await handlers.get_self_check(self_check_id)
        forbid_other_municipality(key_ags=key_ags, ags=self_check.ags)
        return self_check

    OwnSelfCheck = Annotated[SelfCheck, Depends(own_self_check)]

    def public(self_check: SelfCheck) -> SelfCheckPublic:
        catalogue = handlers.catalogues.get(self_check.catalogue_version)
        return SelfCheckPublic.of(self_check, questions=catalogue.question_count())

    @router.get("/v1/fields", response_model=list[FieldOfActionPublic], tags=["catalogue"])
    async def list_fields() -> list[FieldOfActionPublic]:
        return [FieldOfActionPublic(**vars(field)) for field in FIELDS_OF_ACTION]

    @router.get("/v1/catalogue", tags=["catalogue"])
    async def get_catalogue(
        version: Annotated[
            str | None, Query(description="A published version; the current one if left out")
        ] = None,
    ) -> dict[str, Any]:
        catalogue = handlers.catalogues.get(version) if version else handlers.catalogues.current
        return {
            **catalogue.model_dump(mode="json"),
            "current": catalogue.version == handlers.catalogues.current.version,
            "versions": handlers.catalogues.versions,
        }

    @router.get(
        "/v1/municipalities/{ags}", response_model=MunicipalityPublic, tags=["municipalities"]
    )
    async def get_municipality(ags: Ags) -> MunicipalityPublic:
        municipality = await handlers.directory.get(ags)
        if municipality is None:
            raise HTTPException(
                status.HTTP_404_NOT_FOUND, detail=f"{ags} is not a model municipality"
            )
        return MunicipalityPublic(**vars(municipality))

    @router.post(
        "/v1/municipalities/{ags}/self-checks",
        status_code=status.HTTP_201_CREATED,
        response_model=SelfCheckPublic,
        tags=["self-check"],
        responses={200: {"description": "The open draft, which several staff may share"}},
    )
    async def start_self_check(ags: OwnMunicipality, response: Response) -> SelfCheckPublic:
        self_check, created = await handlers.start_self_check(ags)
        if not created:
            response.status_code = status.HTTP_200_OK
        return public(self_check)

    @router.get(
        "/v1/self-checks/{self_check_id}", response_model=SelfCheckPublic, tags=["self-check"]
    )
    async def get_self_check(self_check: OwnSelfCheck) -> SelfCheckPublic:
        return public(self_check)

    async def change_answers(
        self_check: SelfCheck, body: AnswersChange, *, replace_all: bool
    ) -> SelfCheckPublic:
        if replace_all:
            cleared = {
                k: "use PATCH to clear an answer" for k, v in body.answers.items() if v is None
            }
            if cleared:
                raise InvalidAnswers(cleared)
        changed = await handlers.answer(self_check, body.answers, replace_all=replace_all)
        return public(changed)

    @router.patch(
        "/v1/self-checks/{self_check_id}/answers",
        response_model=SelfCheckPublic,
        tags=["self-check"],
        summary="Add or change some answers (null clears one); other answers stay",
    )
    async def patch_answers(self_check: OwnSelfCheck, body: AnswersChange) -> SelfCheckPublic:
        return await change_answers(self_check, body, replace_all=False)

    @router.put(
        "/v1/self-checks/{self_check_id}/answers",
        response_model=SelfCheckPublic,
        tags=["self-check"],
        summary="Replace all answers of the draft",
    )
    async def put_answers(self_check: OwnSelfCheck, body: AnswersChange) -> SelfCheckPublic:
        return await change_answers(self_check, body, replace_all=True)

    @router.post(
        "/v1/self-checks/{self_check_id}/submit",
        response_model=ResultPublic,
        tags=["self-check"],
    )
    async def submit(self_check: OwnSelfCheck) -> ResultPublic:
        return ResultPublic.of(await handlers.submit(self_check.id))

    @router.get(
        "/v1/self-checks/{self_check_id}/result", response_model=ResultPublic, tags=["self-check"]
    )
    async def get_result(self_check: OwnSelfCheck) -> ResultPublic:
        return ResultPublic.of(await handlers.result(self_check.id))

    @router.get(
        "/v1/municipalities/{ags}/benchmark", response_model=BenchmarkPublic, tags=["benchmark"]
    )
    async def get_benchmark(ags: OwnMunicipality) -> BenchmarkPublic:
        fields = await handlers.benchmark(ags)
        return BenchmarkPublic(ags=ags, fields=[FieldBenchmarkPublic(**vars(f)) for f in fields])

    @router.post(
        "/v1/municipalities/{ags}/perspectives",
        status_code=status.HTTP_201_CREATED,
        response_model=PerspectiveRecorded,
        tags=["workshop"],
    )
    async def record_perspective(
        ags: OwnMunicipality, body: PerspectiveCreate
    ) -> PerspectiveRecorded:
        perspective = await handlers.record_perspective(
            ags=ags, workshop=body.workshop, group=body.stakeholder_group, ratings=body.ratings
        )
        return PerspectiveRecorded(
            id=perspective.id,
            ags=ags,
            workshop=perspective.workshop,
            stakeholder_group=perspective.group,
            ratings=dict(perspective.ratings),
        )

    @router.get(
        "/v1/municipalities/{ags}/perspectives",
        response_model=PerspectivesPublic,
        tags=["workshop"],
    )
    async def get_perspectives(
        ags: OwnMunicipality,
        workshop: Annotated[str | None, Query(description="Only this workshop")] = None,
    ) -> PerspectivesPublic:
        summary = await handlers.perspectives(ags, workshop=workshop)
        return PerspectivesPublic(
            ags=ags,
            workshop=summary.workshop,
            self_check_id=summary.self_check_id,
            min_group_size=summary.min_group_size,
            fields=[
                FieldPerspectivesPublic(
                    field=f.field,
                    self_check_score=f.self_check_score,
                    participants=f.participants,
                    counted=f.counted,
                    mean=f.mean,
                    groups=[
                        GroupViewPublic(
                            stakeholder_group=g.group,
                            participants=g.participants,
                            counted=g.counted,
                            too_few_ratings=g.mean is None,
                            mean=g.mean,
                            gap=g.gap,
                        )
                        for g in f.groups
                    ],
                    widest_gap=f.widest_gap.group if f.widest_gap else None,
                )
                for f in summary.fields
            ],
        )

    @router.post(
        "/v1/municipalities/{ags}/measures",
        status_code=status.HTTP_201_CREATED,
        response_model=MeasurePublic,
        tags=["measures"],
    )
    async def plan_measure(ags: OwnMunicipality, body: MeasureCreate) -> MeasurePublic:
        measure = await handlers.plan_measure(ags=ags, **body.model_dump())
        return MeasurePublic.of(measure)

    @router.get(
        "/v1/municipalities/{ags}/measures",
        response_model=list[MeasurePublic],
        tags=["measures"],
    )
    async def list_measures(ags: OwnMunicipality) -> list[MeasurePublic]:
        return [MeasurePublic.of(m) for m in await handlers.measures(ags)]

    @router.patch(
        "/v1/municipalities/{ags}/measures/{measure_id}",
        response_model=MeasurePublic,
        tags=["measures"],
    )
    async def change_measure_status(
        ags: OwnMunicipality, measure_id: str, body: MeasureStatusChange
    ) -> MeasurePublic:
        measure = await handlers.change_measure_status(
            ags=ags, measure_id=measure_id, status=body.status
        )
        return MeasurePublic.of(measure)

    @router.get(
        "/v1/municipalities/{ags}/report",
        response_class=HTMLResponse,
        tags=["report"],
        summary="The field report: radar chart, benchmark band, perspectives, deficits, measures",
    )
    async def field_report(
        ags: Ags, link: ReportReader, lang: ReportLanguage = "de"
    ) -> HTMLResponse:
        return HTMLResponse(
            render_report(
                await handlers.report(ags),
                language=lang,
                link_query=link.query() if link is not None else None,
            )
        )

    @router.get(
        "/v1/municipalities/{ags}/report.pdf",
        response_class=Response,
        tags=["report"],
        summary="The field report as a PDF (A4, the radar chart as vector graphics)",
        responses={200: {"content": {"application/pdf": {}}, "description": "The PDF"}},
    )
    async def field_report_pdf(ags: Ags, _: ReportReader, lang: ReportLanguage = "de") -> Response:
        document = render_report_pdf(await handlers.report(ags), language=lang)
        return Response(
            document,
            media_type="application/pdf",
            headers={"Content-Disposition": f'inline; filename="feldbericht-{ags}.pdf"'},
        )

    return router
