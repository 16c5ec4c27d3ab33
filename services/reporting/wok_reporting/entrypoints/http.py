"""The federal API: the published aggregates, behind the federal office's key, and the
dashboard page that reads them."""

from __future__ import annotations

import csv
import hmac
import io
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Response, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr

from wok_contracts import LANDS, AggregateScope, AggregateSnapshot, Ags
from wok_reporting.domain import (
    FIELD_METRICS,
    FIELD_NAMES_DE,
    FIELD_NAMES_EN,
    FIELD_STATISTICS,
    METRICS,
    PROGRAM,
    STATISTICS,
    scope_id,
)
from wok_reporting.entrypoints.dashboard import dashboard_router
from wok_reporting.snapshots import SnapshotPublisher
from wok_runtime.http_errors import problem

_bearer = HTTPBearer(auto_error=False, description="The federal office's key (WOK_FEDERAL_KEY)")

Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
AgsPath = Annotated[Ags, Path(description="AGS: 8 digits, or 5 for a district")]
LandPath = Annotated[
    str, Path(pattern=r"^(0[1-9]|1[0-6])$", description="Two-digit Land code, 01-16")
]
ScopeQuery = Annotated[
    str | None,
    Query(
        pattern=r"^(program|land:(0[1-9]|1[0-6])|municipality:\d{5}(\d{3})?)$",
        description="Only this scope: program, land:<code> or municipality:<AGS>",
    ),
]
FieldPath = Annotated[int, Path(ge=1, le=7, description="Field of action, 1-7")]

# The version of docs/data-dictionary.md that the exports follow.
DATA_DICTIONARY_VERSION = "1.1"
WITHHELD = "."  # in CSV: withheld by disclosure control (as in official German statistics)
SCOPE_COLUMNS = ("scope", "scope_key", "land_name", "sequence", "as_of", "generated_at")
DAILY_COLUMNS = ("scope", "scope_key", "date", "registrations")
FIELD_COLUMNS = ("field", "field_name_de", "field_name_en", "sequence", "as_of", "generated_at")
AREA_SCOPES = (AggregateScope.PROGRAM, AggregateScope.LAND, AggregateScope.MUNICIPALITY)


def _csv(header: tuple[str, ...], rows: list[list[Any]], filename: str) -> Response:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return Response(
        buffer.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "X-Data-Dictionary-Version": DATA_DICTIONARY_VERSION,
        },
    )


def _cell(value: int | None) -> str:
    return WITHHELD if value is None else str(value)


def _rank(value: float | None) -> int | None:
    return None if value is None else int(value)


def _statistic(snapshot: AggregateSnapshot, name: str) -> str:
    """A statistic in CSV: '.' when withheld, empty when there is no such figure."""
    value = snapshot.statistics.get(name)
    if value is None:
        return WITHHELD if name in snapshot.suppressed else ""
    return str(int(value)) if name.endswith(("_rank", "_quartile")) else str(value)


def _land_name(snapshot: AggregateSnapshot) -> str:
    return (
        LANDS.get(snapshot.scope_key[:2], "")
        if snapshot.scope is not AggregateScope.PROGRAM
        else ""
    )


def _time(value: Any) -> str:
    return "" if value is None else value.isoformat()


# What any route may answer besides its own responses (documented once for all of them).
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: problem("No federal office key, or a wrong one"),
    404: problem("No aggregates for this scope (yet)"),
}


def aggregates_router(*, snapshots: SnapshotPublisher, federal_key: SecretStr) -> APIRouter:
    def require_federal_key(credentials: Credentials) -> None:
        expected = federal_key.get_secret_value()
        # An unset key admits nobody: aggregates are never public by misconfiguration.
        if (
            not expected
            or credentials is None
            or not hmac.compare_digest(credentials.credentials.encode(), expected.encode())
        ):
            raise HTTPException(
                status_code=status.HTTP_401_UNAUTHORIZED,
                detail="a valid federal office key is required",
                headers={"WWW-Authenticate": "Bearer"},
            )

    router = APIRouter(
        prefix="/v1/aggregates",
        tags=["aggregates"],
        dependencies=[Depends(require_federal_key)],
        responses=ERROR_RESPONSES,
    )

    @router.get("/program", response_model=AggregateSnapshot)
    async def get_program_aggregate() -> AggregateSnapshot:
        current = await snapshots.current(PROGRAM)
        if current is None:
            raise HTTPException(
                status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
                detail="the first program snapshot is not computed yet",
                headers={"Retry-After": "1"},
            )
        return current

    @router.get("/municipalities/{ags}", response_model=AggregateSnapshot)
    async def get_municipality_aggregate(ags: AgsPath) -> AggregateSnapshot:
        current = await snapshots.current(scope_id(AggregateScope.MUNICIPALITY, ags))
        if current is None:
            raise HTTPException(
                status_code=status.HTTP_404_NOT_FOUND,
                detail=f"no aggregates for municipality {ags}",
            )
        return current

    @router.get("/lands/{land}", response_model=AggregateSnapshot)
    async def get_land_aggregate(land: LandPath) -> AggregateSnapshot:
        current = await snapshots.current(scope_id(AggregateScope.LAND, land))
        if current is None:
            raise HTTPException(
                status_code=status.HTTP_404_NOT_FOUND, detail=f"no aggregates for Land {land}"
            )
        return current

    @router.get("/fields/{field}", response_model=AggregateSnapshot)
    async def get_field_aggregate(field: FieldPath) -> AggregateSnapshot:
        """One field of action across all municipalities: the score distribution, each
        municipality's score and rank, measures by status, the workshop mean and gap."""
        current = await snapshots.current(scope_id(AggregateScope.FIELD, str(field)))
        if current is None:
            raise HTTPException(
                status_code=status.HTTP_404_NOT_FOUND,
                detail=f"no aggregates for field {field} yet (no self-check, measure or "
                "workshop perspective is known)",
            )
        return current

    @router.get("", response_model=list[AggregateSnapshot])
    async def list_aggregates() -> list[AggregateSnapshot]:
        """The newest snapshot of every scope: program, Länder, municipalities, fields."""
        return await snapshots.all_current()

    async def selected(scope: str | None) -> list[AggregateSnapshot]:
        found = [s for s in await snapshots.all_current() if s.scope in AREA_SCOPES]
        if scope is None:
            return found
        chosen = [s for s in found if scope_id(s.scope, s.scope_key) == scope]
        if not chosen:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no aggregates for {scope}")
        return chosen

    @router.get("/export.csv", response_class=Response)
    async def export_aggregates_csv(scope: ScopeQuery = None) -> Response:
        """One row per scope, one column per metric (docs/data-dictionary.md); '.' = withheld."""
        rows = [
            [
                s.scope.value,
                s.scope_key,
                _land_name(s),
                s.sequence,
                _time(s.as_of),
                _time(s.generated_at),
                *(_cell(s.metrics.get(metric)) for metric in METRICS),
                *(_statistic(s, name) for name in STATISTICS),
            ]
            for s in await selected(scope)
        ]
        return _csv((*SCOPE_COLUMNS, *METRICS, *STATISTICS), rows, "wok-aggregates.csv")

    @router.get("/export.json")
    async def export_aggregates_json(scope: ScopeQuery = None) -> dict[str, Any]:
        """The same as the CSV, as JSON; withheld cells are null and listed in `withheld`."""
        return {
            "data_dictionary_version": DATA_DICTIONARY_VERSION,
            "rows": [
                {
                    "scope": s.scope.value,
                    "scope_key": s.scope_key,
                    "land_name": _land_name(s),
                    "sequence": s.sequence,
                    "as_of": _time(s.as_of) or None,
                    "generated_at": _time(s.generated_at),
                    "metrics": {metric: s.metrics.get(metric) for metric in METRICS},
                    "statistics": {name: s.statistics.get(name) for name in STATISTICS},
                    "withheld": [m for m in s.suppressed if m in METRICS or m in STATISTICS],
                }
                for s in await selected(scope)
            ],
        }

    def daily_rows(found: list[AggregateSnapshot]) -> list[tuple[str, str, str, int | None]]:
        return [
            (s.scope.value, s.scope_key, day, value)
            for s in found
            for day, value in sorted(s.daily_registrations.items())
        ]

    @router.get("/daily-registrations.csv", response_class=Response)
    async def export_daily_csv(scope: ScopeQuery = None) -> Response:
        """Registrations per day (Europe/Berlin) and scope; '.' = withheld."""
        rows = [[*row[:3], _cell(row[3])] for row in daily_rows(await selected(scope))]
        return _csv(DAILY_COLUMNS, rows, "wok-daily-registrations.csv")

    @router.get("/daily-registrations.json")
    async def export_daily_json(scope: ScopeQuery = None) -> dict[str, Any]:
        return {
            "data_dictionary_version": DATA_DICTIONARY_VERSION,
            "rows": [
                dict(zip(DAILY_COLUMNS, row, strict=True))
                for row in daily_rows(await selected(scope))
            ],
        }

    async def field_snapshots() -> list[AggregateSnapshot]:
        found = await snapshots.all_current()
        return [s for s in found if s.scope is AggregateScope.FIELD]

    def field_row(s: AggregateSnapshot) -> list[Any]:
        number = int(s.scope_key)
        return [
            number,
            FIELD_NAMES_DE[number],
            FIELD_NAMES_EN[number],
            s.sequence,
            _time(s.as_of),
            _time(s.generated_at),
            *(_cell(s.metrics.get(metric)) for metric in FIELD_METRICS),
            *(_statistic(s, name) for name in FIELD_STATISTICS),
        ]

    @router.get("/fields.csv", response_class=Response)
    async def export_fields_csv() -> Response:
        """One row per field of action: score distribution across municipalities, measures
        by status, workshop mean and gap; '.' = withheld, empty = no figure yet."""
        rows = [field_row(s) for s in await field_snapshots()]
        return _csv((*FIELD_COLUMNS, *FIELD_METRICS, *FIELD_STATISTICS), rows, "wok-fields.csv")

    @router.get("/fields.json")
    async def export_fields_json() -> dict[str, Any]:
        return {
            "data_dictionary_version": DATA_DICTIONARY_VERSION,
            "rows": [
                {
                    "field": int(s.scope_key),
                    "field_name_de": FIELD_NAMES_DE[int(s.scope_key)],
                    "field_name_en": FIELD_NAMES_EN[int(s.scope_key)],
                    "sequence": s.sequence,
                    "as_of": _time(s.as_of) or None,
                    "generated_at": _time(s.generated_at),
                    "metrics": {metric: s.metrics.get(metric) for metric in FIELD_METRICS},
                    "statistics": {name: s.statistics.get(name) for name in FIELD_STATISTICS},
                    "municipalities": {
                        name.removeprefix("score:"): {
                            "score": value,
                            "rank": _rank(s.statistics.get("rank:" + name.removeprefix("score:"))),
                        }
                        for name, value in sorted(s.statistics.items())
                        if name.startswith("score:")
                    },
                    "withheld": list(s.suppressed),
                }
                for s in await field_snapshots()
            ],
        }

    # The dashboard page next to the API it reads (it holds no figures itself).
    with_dashboard = APIRouter()
    with_dashboard.include_router(router)
    with_dashboard.include_router(dashboard_router())
    return with_dashboard
