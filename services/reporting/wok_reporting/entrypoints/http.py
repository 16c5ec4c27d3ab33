"""The federal API: the published aggregates, behind the federal office's key."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr

from wok_contracts import AggregateScope, AggregateSnapshot, Ags
from wok_reporting.domain import PROGRAM, scope_id
from wok_reporting.snapshots import SnapshotPublisher

_bearer = HTTPBearer(auto_error=False, description="The federal office's key (WOK_FEDERAL_KEY)")

Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
AgsPath = Annotated[Ags, Path(description="AGS: 8 digits, or 5 for a district")]


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

    return router
