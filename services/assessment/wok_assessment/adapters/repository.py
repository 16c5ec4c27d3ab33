"""Storage of the assessment service: self-checks, workshop perspectives, measures, and the
municipalities learnt from events. Every write carries its pending events (outbox).

Only shapes nx-27017 handles (DESIGN.md section 8): whole-document inserts, conditional
`update_one` with `$set`/`$unset`/`$inc` on map keys, finds with sort/limit. Answers are a
map keyed by question id (never an array). Question ids contain a dot (`f1.q01`), which a
field path would read as nesting, so they are stored with `_` (`f1_q01`). Times changed
after the insert are stored as ISO strings (nx-27017 would store a `$set` datetime without
its zone).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any, Protocol

from pymongo.errors import DuplicateKeyError

from wok_assessment.domain import KnownMunicipality
from wok_assessment.domain.measures import Measure
from wok_assessment.domain.self_check import SelfCheck, SelfCheckStatus
from wok_assessment.domain.workshop import Perspective
from wok_contracts.events.assessment import MeasureStatus, StakeholderGroup
from wok_runtime.outbox import InMemoryOutboxSource, OutboundEvent, outbox_update, with_outbox


class MunicipalityDirectory(Protocol):
    async def remember(self, municipality: KnownMunicipality) -> None: ...

    async def get(self, ags: str) -> KnownMunicipality | None: ...


class MongoMunicipalityDirectory:
    def __init__(self, database: Any) -> None:
        self._collection = database["municipalities"]

    async def remember(self, municipality: KnownMunicipality) -> None:
        await self._collection.update_one(
            {"_id": municipality.ags},
            {"$set": {"name": municipality.name, "land": municipality.land}},
            upsert=True,
        )

    async def get(self, ags: str) -> KnownMunicipality | None:
        document = await self._collection.find_one({"_id": ags})
        if document is None:
            return None
        return KnownMunicipality(ags=document["_id"], name=document["name"], land=document["land"])


class InMemoryMunicipalityDirectory:
    def __init__(self) -> None:
        self.municipalities: dict[str, KnownMunicipality] = {}

    async def remember(self, municipality: KnownMunicipality) -> None:
        self.municipalities[municipality.ags] = municipality

    async def get(self, ags: str) -> KnownMunicipality | None:
        return self.municipalities.get(ags)


class AssessmentRepository(Protocol):
    async def latest_self_check(self, ags: str) -> SelfCheck | None: ...

    async def add_self_check(self, self_check: SelfCheck, events: list[OutboundEvent]) -> bool:
        """False if a self-check with this id exists (a concurrent start took the number)."""
        ...

    async def get_self_check(self, self_check_id: str) -> SelfCheck | None: ...

    async def change_answers(
        self,
        self_check_id: str,
        *,
        to_set: dict[str, str],
        to_clear: list[str],
        replace_all: bool,
        now: datetime,
    ) -> bool:
        """False unless the self-check is (still) a draft."""
        ...

    async def submit(self, self_check: SelfCheck, *, events: list[OutboundEvent]) -> bool:
        """Mark submitted, if still a draft at the revision that was scored."""
        ...

    async def submitted_self_checks(self, ags: str) -> list[SelfCheck]:
        """The municipality's submitted self-checks, oldest first."""
        ...

    async def latest_submitted_of_all(self) -> list[SelfCheck]:
        """The newest submitted self-check of every municipality."""
        ...

    async def add_perspective(
        self, perspective: Perspective, events: list[OutboundEvent]
    ) -> None: ...

    async def perspectives(self, ags: str, *, workshop: str | None = None) -> list[Perspective]: ...

    async def add_measure(self, measure: Measure, events: list[OutboundEvent]) -> None: ...

    async def get_measure(self, measure_id: str) -> Measure | None: ...

    async def change_measure_status(
        self, measure: Measure, *, previous: MeasureStatus, events: list[OutboundEvent]
    ) -> bool:
        """False if the status is no longer `previous` (someone changed it meanwhile)."""
        ...

    async def measures(self, ags: str) -> list[Measure]: ...


# -- documents ------------------------------------------------------------------------------


def _stored_key(question_id: str) -> str:
    return question_id.replace(".", "_")


def _question_id(stored_key: str) -> str:
    return stored_key.replace("_", ".")


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _self_check_document(self_check: SelfCheck) -> dict[str, Any]:
    return {
        "_id": self_check.id,
        "ags": self_check.ags,
        "sequence": self_check.sequence,
        "catalogue_version": self_check.catalogue_version,
        "status": self_check.status.value,
        "started_at": self_check.started_at,
        "updated_at": self_check.started_at.isoformat(),
        "submitted_at": None,
        "answers": {_stored_key(k): v for k, v in self_check.answers.items()},
        "revision": self_check.revision,
    }


def _self_check(document: dict[str, Any]) -> SelfCheck:
    submitted_at = document.get("submitted_at")
    return SelfCheck(
        id=document["_id"],
        ags=document["ags"],
        sequence=document["sequence"],
        catalogue_version=document["catalogue_version"],
        status=SelfCheckStatus(document["status"]),
        started_at=_aware(document["started_at"]),
        answers={_question_id(k): v for k, v in (document.get("answers") or {}).items()},
        submitted_at=datetime.fromisoformat(submitted_at) if submitted_at else None,
        revision=document.get("revision", 0),
    )


def _answers_update(
    *, to_set: dict[str, str], to_clear: list[str], replace_all: bool, now: datetime
) -> dict[str, Any]:
    assignments: dict[str, Any] = {"updated_at": now.isoformat()}
    update: dict[str, Any] = {"$set": assignments, "$inc": {"revision": 1}}
    if replace_all:
        assignments["answers"] = {_stored_key(k): v for k, v in to_set.items()}
        return update
    for question_id, value in to_set.items():
        assignments[f"answers.{_stored_key(question_id)}"] = value
    if to_clear:
        update["$unset"] = {f"answers.{_stored_key(q)}": "" for q in to_clear}
    return update


def _submit_filter(self_check: SelfCheck) -> dict[str, Any]:
    return {
        "_id": self_check.id,
        "status": SelfCheckStatus.DRAFT.value,
        "revision": self_check.revision,
    }


def _submit_update(self_check: SelfCheck, events: list[OutboundEvent]) -> dict[str, Any]:
    assert self_check.submitted_at is not None
    return outbox_update(
        events,
        set_fields={
            "status": SelfCheckStatus.SUBMITTED.value,
            "submitted_at": self_check.submitted_at.isoformat(),
            "updated_at": self_check.submitted_at.isoformat(),
        },
    )


def _perspective_document(perspective: Perspective) -> dict[str, Any]:
    return {
        "_id": perspective.id,
        "ags": perspective.ags,
        "workshop": perspective.workshop,
        "group": perspective.group.value,
        "ratings": {str(field): rating for field, rating in perspective.ratings.items()},
        "recorded_at": perspective.recorded_at,
    }


def _perspective(document: dict[str, Any]) -> Perspective:
    return Perspective(
        id=document["_id"],
        ags=document["ags"],
        workshop=document["workshop"],
        group=StakeholderGroup(document["group"]),
        ratings={int(field): rating for field, rating in document["ratings"].items()},
        recorded_at=_aware(document["recorded_at"]),
    )


def _iso_date(value: date | None) -> str | None:
    return value.isoformat() if value is not None else None


def _date(value: str | None) -> date | None:
    return date.fromisoformat(value) if value else None


def _measure_document(measure: Measure) -> dict[str, Any]:
    return {
        "_id": measure.id,
        "ags": measure.ags,
        "field": measure.field,
        "title": measure.title,
        "owner_role": measure.owner_role,
        "status": measure.status.value,
        "starts_on": _iso_date(measure.starts_on),
        "due_on": _iso_date(measure.due_on),
        "status_changed_on": measure.status_changed_on.isoformat(),
    }


def _measure(document: dict[str, Any]) -> Measure:
    return Measure(
        id=document["_id"],
        ags=document["ags"],
        field=document["field"],
        title=document["title"],
        owner_role=document["owner_role"],
        status=MeasureStatus(document["status"]),
        starts_on=_date(document.get("starts_on")),
        due_on=_date(document.get("due_on")),
        status_changed_on=date.fromisoformat(document["status_changed_on"]),
    )


def _status_update(measure: Measure, events: list[OutboundEvent]) -> dict[str, Any]:
    return outbox_update(
        events,
        set_fields={
            "status": measure.status.value,
            "status_changed_on": measure.status_changed_on.isoformat(),
        },
    )


def _newest_per_municipality(self_checks: list[SelfCheck]) -> list[SelfCheck]:
    newest: dict[str, SelfCheck] = {}
    for self_check in self_checks:
        known = newest.get(self_check.ags)
        if known is None or self_check.sequence > known.sequence:
            newest[self_check.ags] = self_check
    return sorted(newest.values(), key=lambda s: s.ags)


# -- MongoDB -------------------------------------------------------------------------------


class MongoAssessmentRepository:
    def __init__(self, database: Any) -> None:
        self.self_checks = database["self_checks"]
        self.perspectives_collection = database["perspectives"]
        self.measures_collection = database["measures"]

    def outbox_collections(self) -> list[Any]:
        return [self.self_checks, self.perspectives_collection, self.measures_collection]

    async def ensure_indexes(self) -> None:
        await self.self_checks.create_index([("ags", 1), ("sequence", -1)])
        await self.self_checks.create_index("status")
        await self.perspectives_collection.create_index("ags")
        await self.measures_collection.create_index("ags")

    async def latest_self_check(self, ags: str) -> SelfCheck | None:
        cursor = self.self_checks.find({"ags": ags}).sort("sequence", -1).limit(1)
        documents = [document async for document in cursor]
        return _self_check(documents[0]) if documents else None

    async def add_self_check(self, self_check: SelfCheck, events: list[OutboundEvent]) -> bool:
        try:
            await self.self_checks.insert_one(with_outbox(_self_check_document(self_check), events))
        except DuplicateKeyError:
            return False
        return True

    async def get_self_check(self, self_check_id: str) -> SelfCheck | None:
        document = await self.self_checks.find_one({"_id": self_check_id})
        return _self_check(document) if document else None

    async def change_answers(
        self,
        self_check_id: str,
        *,
        to_set: dict[str, str],
        to_clear: list[str],
        replace_all: bool,
        now: datetime,
    ) -> bool:
        result = await self.self_checks.update_one(
            {"_id": self_check_id, "status": SelfCheckStatus.DRAFT.value},
            _answers_update(to_set=to_set, to_clear=to_clear, replace_all=replace_all, now=now),
        )
        return bool(result.matched_count)

    async def submit(self, self_check: SelfCheck, *, events: list[OutboundEvent]) -> bool:
        result = await self.self_checks.update_one(
            _submit_filter(self_check), _submit_update(self_check, events)
        )
        return bool(result.matched_count)

    async def submitted_self_checks(self, ags: str) -> list[SelfCheck]:
        cursor = self.self_checks.find(
            {"ags": ags, "status": SelfCheckStatus.SUBMITTED.value}
        ).sort("sequence", 1)
        return [_self_check(document) async for document in cursor]

    async def latest_submitted_of_all(self) -> list[SelfCheck]:
        cursor = self.self_checks.find({"status": SelfCheckStatus.SUBMITTED.value})
        return _newest_per_municipality([_self_check(document) async for document in cursor])

    async def add_perspective(self, perspective: Perspective, events: list[OutboundEvent]) -> None:
        await self.perspectives_collection.insert_one(
            with_outbox(_perspective_document(perspective), events)
        )

    async def perspectives(self, ags: str, *, workshop: str | None = None) -> list[Perspective]:
        query: dict[str, Any] = {"ags": ags}
        if workshop is not None:
            query["workshop"] = workshop
        cursor = self.perspectives_collection.find(query).sort("recorded_at", 1)
        return [_perspective(document) async for document in cursor]

    async def add_measure(self, measure: Measure, events: list[OutboundEvent]) -> None:
        await self.measures_collection.insert_one(with_outbox(_measure_document(measure), events))

    async def get_measure(self, measure_id: str) -> Measure | None:
        document = await self.measures_collection.find_one({"_id": measure_id})
        return _measure(document) if document else None

    async def change_measure_status(
        self, measure: Measure, *, previous: MeasureStatus, events: list[OutboundEvent]
    ) -> bool:
        result = await self.measures_collection.update_one(
            {"_id": measure.id, "status": previous.value}, _status_update(measure, events)
        )
        return bool(result.matched_count)

    async def measures(self, ags: str) -> list[Measure]:
        cursor = self.measures_collection.find({"ags": ags}).sort("_id", 1)
        return sorted(
            [_measure(document) async for document in cursor],
            key=lambda m: (m.field, m.status_changed_on, m.id),
        )


# -- in memory (fast tests): the same documents and update documents, applied by hand ------


def _apply(document: dict[str, Any], update: dict[str, Any]) -> None:
    for path, value in update.get("$set", {}).items():
        *parents, leaf = path.split(".")
        target = document
        for part in parents:
            target = target.setdefault(part, {})
        target[leaf] = copy.deepcopy(value)
    for path in update.get("$unset", {}):
        *parents, leaf = path.split(".")
        target = document
        for part in parents:
            target = target.get(part, {})
        target.pop(leaf, None)
    for path, amount in update.get("$inc", {}).items():
        document[path] = document.get(path, 0) + amount


class InMemoryAssessmentRepository:
    def __init__(self) -> None:
        self.self_checks: dict[str, dict[str, Any]] = {}
        self.perspective_documents: dict[str, dict[str, Any]] = {}
        self.measure_documents: dict[str, dict[str, Any]] = {}

    def outbox_sources(self) -> list[InMemoryOutboxSource]:
        return [
            InMemoryOutboxSource(self.self_checks),
            InMemoryOutboxSource(self.perspective_documents),
            InMemoryOutboxSource(self.measure_documents),
        ]

    def _find(
        self, documents: dict[str, dict[str, Any]], accept: Callable[[dict[str, Any]], bool]
    ) -> list[dict[str, Any]]:
        return [copy.deepcopy(d) for d in documents.values() if accept(d)]

    async def latest_self_check(self, ags: str) -> SelfCheck | None:
        found = self._find(self.self_checks, lambda d: d["ags"] == ags)
        return _self_check(max(found, key=lambda d: d["sequence"])) if found else None

    async def add_self_check(self, self_check: SelfCheck, events: list[OutboundEvent]) -> bool:
        if self_check.id in self.self_checks:
            return False
        self.self_checks[self_check.id] = with_outbox(_self_check_document(self_check), events)
        return True

    async def get_self_check(self, self_check_id: str) -> SelfCheck | None:
        document = self.self_checks.get(self_check_id)
        return _self_check(copy.deepcopy(document)) if document else None

    async def change_answers(
        self,
        self_check_id: str,
        *,
        to_set: dict[str, str],
        to_clear: list[str],
        replace_all: bool,
        now: datetime,
    ) -> bool:
        document = self.self_checks.get(self_check_id)
        if document is None or document["status"] != SelfCheckStatus.DRAFT.value:
            return False
        _apply(
            document,
            _answers_update(to_set=to_set, to_clear=to_clear, replace_all=replace_all, now=now),
        )
        return True

    async def submit(self, self_check: SelfCheck, *, events: list[OutboundEvent]) -> bool:
        document = self.self_checks.get(self_check.id)
        if document is None or any(
            document.get(k) != v for k, v in _submit_filter(self_check).items()
        ):
            return False
        _apply(document, _submit_update(self_check, events))
        return True

    async def submitted_self_checks(self, ags: str) -> list[SelfCheck]:
        found = self._find(
            self.self_checks,
            lambda d: d["ags"] == ags and d["status"] == SelfCheckStatus.SUBMITTED.value,
        )
        return [_self_check(d) for d in sorted(found, key=lambda d: d["sequence"])]

    async def latest_submitted_of_all(self) -> list[SelfCheck]:
        found = self._find(
            self.self_checks, lambda d: d["status"] == SelfCheckStatus.SUBMITTED.value
        )
        return _newest_per_municipality([_self_check(d) for d in found])

    async def add_perspective(self, perspective: Perspective, events: list[OutboundEvent]) -> None:
        self.perspective_documents[perspective.id] = with_outbox(
            _perspective_document(perspective), events
        )

    async def perspectives(self, ags: str, *, workshop: str | None = None) -> list[Perspective]:
        found = self._find(
            self.perspective_documents,
            lambda d: d["ags"] == ags and (workshop is None or d["workshop"] == workshop),
        )
        return [_perspective(d) for d in sorted(found, key=lambda d: d["recorded_at"])]

    async def add_measure(self, measure: Measure, events: list[OutboundEvent]) -> None:
        self.measure_documents[measure.id] = with_outbox(_measure_document(measure), events)

    async def get_measure(self, measure_id: str) -> Measure | None:
        document = self.measure_documents.get(measure_id)
        return _measure(copy.deepcopy(document)) if document else None

    async def change_measure_status(
        self, measure: Measure, *, previous: MeasureStatus, events: list[OutboundEvent]
    ) -> bool:
        document = self.measure_documents.get(measure.id)
        if document is None or document["status"] != previous.value:
            return False
        _apply(document, _status_update(measure, events))
        return True

    async def measures(self, ags: str) -> list[Measure]:
        found = self._find(self.measure_documents, lambda d: d["ags"] == ags)
        return sorted(
            (_measure(d) for d in found), key=lambda m: (m.field, m.status_changed_on, m.id)
        )
