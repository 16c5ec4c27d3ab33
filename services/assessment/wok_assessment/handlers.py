"""Thin handlers: command in, domain rules, one store write with the events it caused."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from wok_assessment.adapters.repository import AssessmentRepository, MunicipalityDirectory
from wok_assessment.domain import KnownMunicipality
from wok_assessment.domain import measures as measure_rules
from wok_assessment.domain.benchmark import FieldBenchmark, benchmark
from wok_assessment.domain.catalogue import Catalogue, Catalogues
from wok_assessment.domain.scoring import Assessment, FieldProgress, assess, progress
from wok_assessment.domain.self_check import (
    NotADraft,
    SelfCheck,
    checked_answers,
    start_self_check,
    submit_self_check,
)
from wok_assessment.domain.workshop import (
    DEFAULT_MIN_GROUP_SIZE,
    FieldPerspectives,
    Perspective,
    record_perspective,
    summarize,
)
from wok_contracts import Envelope, EventData, MunicipalityRegistered, new_envelope
from wok_contracts.events.assessment import MeasureStatus, StakeholderGroup
from wok_contracts.topics import ASSESSMENT_EVENTS
from wok_runtime.logging import current_correlation_id, get_logger
from wok_runtime.outbox import OutboundEvent

SOURCE = "/wok/assessment"
SUBMIT_ATTEMPTS = 5

log = get_logger(__name__)


class NotFound(Exception):
    pass


class Conflict(Exception):
    pass


def _outbound(data: EventData, *, ags: str, subject: str) -> OutboundEvent:
    envelope = new_envelope(
        data,
        source=SOURCE,
        municipality=ags,
        subject=subject,
        correlation_id=current_correlation_id(),
    )
    return OutboundEvent(topic=ASSESSMENT_EVENTS, envelope=envelope)


@dataclass(frozen=True)
class SelfCheckResult:
    self_check: SelfCheck
    catalogue: Catalogue
    assessment: Assessment
    previous: SelfCheck | None
    progress: tuple[FieldProgress, ...] | None


@dataclass(frozen=True)
class PerspectiveSummary:
    workshop: str | None
    self_check_id: str | None
    min_group_size: int
    fields: tuple[FieldPerspectives, ...]


@dataclass(frozen=True)
class Report:
    ags: str
    municipality: KnownMunicipality | None
    catalogue: Catalogue
    result: SelfCheckResult | None
    benchmark: tuple[FieldBenchmark, ...]
    perspectives: PerspectiveSummary
    measures: list[measure_rules.Measure]


class AssessmentHandlers:
    def __init__(
        self,
        *,
        directory: MunicipalityDirectory,
        repository: AssessmentRepository,
        catalogues: Catalogues,
        events_stored: Callable[[], None] = lambda: None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        min_group_size: int = DEFAULT_MIN_GROUP_SIZE,
    ) -> None:
        self.min_group_size = min_group_size
        self.directory = directory
        self.repository = repository
        self.catalogues = catalogues
        self._events_stored = events_stored
        self._clock = clock

    # -- events from registration -----------------------------------------------------------

    async def remember_municipality(self, envelope: Envelope[Any]) -> None:
        data: MunicipalityRegistered = envelope.data
        await self.directory.remember(
            KnownMunicipality(ags=data.ags, name=data.name, land=data.land)
        )

    # -- self-checks --------------------------------------------------------------------

    async def start_self_check(self, ags: str) -> tuple[SelfCheck, bool]:
        """The open draft if there is one (several staff share it), else a new one."""
        for _ in range(SUBMIT_ATTEMPTS):
            latest = await self.repository.latest_self_check(ags)
            if latest is not None and latest.is_draft:
                return latest, False
            draft, event = start_self_check(
                ags=ags, latest=latest, catalogue=self.catalogues.current, now=self._clock()
            )
            if await self.repository.add_self_check(
                draft, [_outbound(event, ags=ags, subject=draft.id)]
            ):
                self._events_stored()
                log.info("self-check started", ags=ags, self_check_id=draft.id)
                return draft, True
        raise Conflict("the self-check could not be started; please try again")

    async def get_self_check(self, self_check_id: str) -> SelfCheck:
        self_check = await self.repository.get_self_check(self_check_id)
        if self_check is None:
            raise NotFound(f"self-check {self_check_id} does not exist")
        return self_check

    async def answer(
        self, self_check: SelfCheck, answers: Mapping[str, str | None], *, replace_all: bool
    ) -> SelfCheck:
        catalogue = self.catalogues.get(self_check.catalogue_version)
        to_set, to_clear = checked_answers(catalogue, answers)
        if not self_check.is_draft or not await self.repository.change_answers(
            self_check.id,
            to_set=to_set,
            to_clear=to_clear,
            replace_all=replace_all,
            now=self._clock(),
        ):
            raise NotADraft(f"self-check {self_check.id} was submitted; its answers are final")
        return await self.get_self_check(self_check.id)

    async def submit(self, self_check_id: str) -> SelfCheckResult:
        for _ in range(SUBMIT_ATTEMPTS):
            draft = await self.get_self_check(self_check_id)
            catalogue = self.catalogues.get(draft.catalogue_version)
            submitted, _assessment, events = submit_self_check(draft, catalogue, now=self._clock())
            stored = await self.repository.submit(
                submitted,
                events=[_outbound(event, ags=draft.ags, subject=draft.id) for event in events],
            )
            if stored:
                self._events_stored()
                log.info("self-check submitted", ags=draft.ags, self_check_id=draft.id)
                return await self.result(self_check_id)
            # answers changed (or someone submitted) between reading and writing: look again
        raise Conflict("the answers kept changing while submitting; please try again")

    async def result(self, self_check_id: str) -> SelfCheckResult:
        self_check = await self.get_self_check(self_check_id)
        catalogue = self.catalogues.get(self_check.catalogue_version)
        assessment = assess(catalogue, self_check.answers)
        earlier = [
            s
            for s in await self.repository.submitted_self_checks(self_check.ags)
            if s.sequence < self_check.sequence
        ]
        previous = earlier[-1] if earlier else None
        changes = None
        if previous is not None:
            before = assess(self.catalogues.get(previous.catalogue_version), previous.answers)
            changes = progress(assessment, before)
        return SelfCheckResult(self_check, catalogue, assessment, previous, changes)

    async def latest_result(self, ags: str) -> SelfCheckResult | None:
        submitted = await self.repository.submitted_self_checks(ags)
        return await self.result(submitted[-1].id) if submitted else None

    async def benchmark(self, ags: str) -> tuple[FieldBenchmark, ...]:
        latest = {
            s.ags: assess(self.catalogues.get(s.catalogue_version), s.answers)
            for s in await self.repository.latest_submitted_of_all()
        }
        return benchmark(latest, ags)

    # -- workshop -----------------------------------------------------------------------

    async def record_perspective(
        self, *, ags: str, workshop: str, group: StakeholderGroup, ratings: Mapping[int, int]
    ) -> Perspective:
        perspective, event = record_perspective(
            ags=ags, workshop=workshop, group=group, ratings=ratings, now=self._clock()
        )
        await self.repository.add_perspective(
            perspective, [_outbound(event, ags=ags, subject=perspective.id)]
        )
        self._events_stored()
        log.info("workshop perspective recorded", ags=ags, group=group.value)
        return perspective

    async def perspectives(self, ags: str, *, workshop: str | None) -> PerspectiveSummary:
        latest = await self.latest_result(ags)
        found = await self.repository.perspectives(ags, workshop=workshop)
        return PerspectiveSummary(
            workshop=workshop,
            self_check_id=latest.self_check.id if latest else None,
            min_group_size=self.min_group_size,
            fields=summarize(
                found,
                latest.assessment if latest else None,
                min_group_size=self.min_group_size,
            ),
        )

    # -- measures -----------------------------------------------------------------------

    async def plan_measure(
        self,
        *,
        ags: str,
        field: int,
        title: str,
        owner_role: str,
        starts_on: date | None,
        due_on: date | None,
    ) -> measure_rules.Measure:
        measure, event = measure_rules.plan_measure(
            ags=ags,
            field=field,
            title=title,
            owner_role=owner_role,
            starts_on=starts_on,
            due_on=due_on,
            today=self._clock().date(),
        )
        await self.repository.add_measure(measure, [_outbound(event, ags=ags, subject=measure.id)])
        self._events_stored()
        log.info("measure planned", ags=ags, measure_id=measure.id, field=field)
        return measure

    async def change_measure_status(
        self, *, ags: str, measure_id: str, status: MeasureStatus
    ) -> measure_rules.Measure:
        measure = await self.repository.get_measure(measure_id)
        if measure is None or measure.ags != ags:
            raise NotFound(f"measure {measure_id} does not exist for {ags}")
        changed, event = measure_rules.change_status(measure, status, today=self._clock().date())
        if not await self.repository.change_measure_status(
            changed,
            previous=measure.status,
            events=[_outbound(event, ags=ags, subject=measure.id)],
        ):
            raise Conflict(f"measure {measure_id} was changed meanwhile; reload it and try again")
        self._events_stored()
        log.info("measure status changed", ags=ags, measure_id=measure_id, status=status.value)
        return changed

    async def measures(self, ags: str) -> list[measure_rules.Measure]:
        return await self.repository.measures(ags)

    # -- the field report ---------------------------------------------------------------

    async def report(self, ags: str) -> Report:
        result = await self.latest_result(ags)
        return Report(
            ags=ags,
            municipality=await self.directory.get(ags),
            catalogue=result.catalogue if result else self.catalogues.current,
            result=result,
            benchmark=await self.benchmark(ags),
            perspectives=await self.perspectives(ags, workshop=None),
            measures=await self.measures(ags),
        )
