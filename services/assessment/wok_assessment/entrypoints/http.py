"""HTTP routes of the assessment service (no future import: FastAPI resolves types at runtime)."""

from fastapi import APIRouter, HTTPException, status
from pydantic import BaseModel

from wok_assessment.domain import FIELDS_OF_ACTION
from wok_assessment.handlers import AssessmentHandlers
from wok_contracts import Ags


class FieldOfActionPublic(BaseModel):
    number: int
    name_de: str
    name_en: str


class MunicipalityPublic(BaseModel):
    ags: str
    name: str
    land: str


def build_router(handlers: AssessmentHandlers) -> APIRouter:
    router = APIRouter()

    @router.get("/v1/fields", response_model=list[FieldOfActionPublic], tags=["catalogue"])
    async def list_fields() -> list[FieldOfActionPublic]:
        return [FieldOfActionPublic(**vars(field)) for field in FIELDS_OF_ACTION]

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

    return router
