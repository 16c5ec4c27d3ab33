"""HTTP routes: translate the wire into handler calls, and domain errors into clear 4xx.

No `from __future__ import annotations` here: FastAPI resolves the dependency aliases
defined inside `build_router` at runtime.
"""

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import AwareDatetime, BaseModel, ConfigDict, EmailStr, Field

from wok_contracts import Ags, EventFormat, MunicipalityKind, RegistrationStatus, Sector
from wok_registration import domain
from wok_registration.handlers import Conflict, NotFound, RegistrationHandlers
from wok_registration.settings import RegistrationSettings

bearer = HTTPBearer(auto_error=False)
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
AgsPath = Annotated[Ags, Path(description="AGS of the municipality, e.g. 07312000")]


class MunicipalityCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ags: Ags
    name: str = Field(min_length=1, max_length=200)
    kind: MunicipalityKind
    population: int | None = Field(default=None, ge=0)


class MunicipalityCreated(BaseModel):
    ags: str
    name: str
    kind: MunicipalityKind
    land: str
    api_key: str = Field(description="Shown once; store it safely")


class KeyRotated(BaseModel):
    ags: str
    api_key: str


class DialogueEventCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1, max_length=300)
    description: str = Field(default="", max_length=5000)
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    format: EventFormat
    place: str | None = Field(default=None, max_length=500)
    online_link: str | None = Field(default=None, max_length=1000)
    capacity: int = Field(ge=1, le=100_000)
    registration_deadline: AwareDatetime
    languages: list[Annotated[str, Field(pattern=r"^[a-z]{2}$")]] = Field(
        default_factory=lambda: ["de"], min_length=1
    )


class DialogueEventPublic(BaseModel):
    id: str
    ags: str
    title: str
    description: str
    starts_at: datetime
    ends_at: datetime
    format: EventFormat
    place: str | None
    capacity: int
    places_left: int
    registration_deadline: datetime
    languages: list[str]

    @classmethod
    def of(cls, event: domain.DialogueEvent) -> "DialogueEventPublic":
        return cls(
            id=event.id,
            ags=event.ags,
            title=event.title,
            description=event.description,
            starts_at=event.starts_at,
            ends_at=event.ends_at,
            format=event.format,
            place=event.place,
            capacity=event.capacity,
            places_left=event.places_left,
            registration_deadline=event.registration_deadline,
            languages=list(event.languages),
        )


class RegistrationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    email: EmailStr
    sector: Sector
    language: str = Field(default="de", pattern=r"^[a-z]{2}$")
    consent: Literal[True] = Field(
        description="Explicit consent to the privacy notice; registration is refused without it"
    )


class RegistrationPublic(BaseModel):
    registration_id: str
    dialogue_event_id: str
    status: RegistrationStatus


class Contact(BaseModel):
    registration_id: str
    dialogue_event_id: str
    name: str
    email: str
    language: str


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, detail=detail, headers={"WWW-Authenticate": "Bearer"}
    )


def build_router(handlers: RegistrationHandlers, settings: RegistrationSettings) -> APIRouter:
    router = APIRouter()

    def require_admin(credentials: Credentials) -> None:
        if credentials is None:
            raise _unauthorized("an admin key is required")
        if not domain.keys_match(credentials.credentials, settings.admin_key.get_secret_value()):
            raise _unauthorized("invalid admin key")

    def require_service(credentials: Credentials) -> None:
        if credentials is None or not domain.keys_match(
            credentials.credentials, settings.service_key.get_secret_value()
        ):
            raise _unauthorized("a valid service key is required")

    async def require_municipality(ags: AgsPath, credentials: Credentials) -> str:
        if credentials is None:
            raise _unauthorized("the municipality's key is required")
        municipality = await handlers.municipality_for_key(credentials.credentials)
        if municipality is None:
            raise _unauthorized("unknown or revoked key")
        if municipality.ags != ags:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN, detail=f"this key may act only for {municipality.ags}"
            )
        return ags

    Admin = Annotated[None, Depends(require_admin)]
    Service = Annotated[None, Depends(require_service)]
    OwnMunicipality = Annotated[str, Depends(require_municipality)]

    @router.post(
        "/v1/municipalities",
        status_code=status.HTTP_201_CREATED,
        response_model=MunicipalityCreated,
        tags=["municipalities"],
    )
    async def onboard_municipality(body: MunicipalityCreate, _: Admin) -> MunicipalityCreated:
        try:
            municipality, api_key = await handlers.onboard_municipality(
                ags=body.ags, name=body.name, kind=body.kind, population=body.population
            )
        except Conflict as error:
            raise HTTPException(status.HTTP_409_CONFLICT, detail=str(error)) from error
        return MunicipalityCreated(
            ags=municipality.ags,
            name=municipality.name,
            kind=municipality.kind,
            land=municipality.land,
            api_key=api_key,
        )

    @router.post(
        "/v1/municipalities/{ags}/keys",
        status_code=status.HTTP_201_CREATED,
        response_model=KeyRotated,
        tags=["municipalities"],
    )
    async def rotate_key(ags: AgsPath, _: Admin) -> KeyRotated:
        try:
            return KeyRotated(ags=ags, api_key=await handlers.rotate_key(ags=ags))
        except NotFound as error:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(error)) from error

    @router.post(
        "/v1/municipalities/{ags}/dialogue-events",
        status_code=status.HTTP_201_CREATED,
        response_model=DialogueEventPublic,
        tags=["dialogue events"],
    )
    async def schedule_dialogue_event(
        body: DialogueEventCreate, ags: OwnMunicipality
    ) -> DialogueEventPublic:
        fields = body.model_dump()
        fields["languages"] = tuple(fields["languages"])
        try:
            event = await handlers.schedule_dialogue_event(ags=ags, fields=fields)
        except domain.InvalidSchedule as error:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(error)) from error
        return DialogueEventPublic.of(event)

    @router.get(
        "/v1/dialogue-events/{dialogue_event_id}",
        response_model=DialogueEventPublic,
        tags=["dialogue events"],
    )
    async def get_dialogue_event(dialogue_event_id: str) -> DialogueEventPublic:
        try:
            return DialogueEventPublic.of(await handlers.get_dialogue_event(dialogue_event_id))
        except NotFound as error:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(error)) from error

    @router.post(
        "/v1/dialogue-events/{dialogue_event_id}/registrations",
        status_code=status.HTTP_201_CREATED,
        response_model=RegistrationPublic,
        tags=["registrations"],
        responses={200: {"description": "This address was already registered for the event"}},
    )
    async def register_participant(
        dialogue_event_id: str, body: RegistrationCreate
    ) -> RegistrationPublic:
        try:
            registration = await handlers.register_participant(
                domain.RegistrationRequest(
                    dialogue_event_id=dialogue_event_id,
                    name=body.name,
                    email=str(body.email),
                    sector=body.sector,
                    language=body.language,
                )
            )
        except NotFound as error:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(error)) from error
        except domain.RegistrationClosed as error:
            raise HTTPException(status.HTTP_409_CONFLICT, detail=str(error)) from error
        except Conflict as error:
            raise HTTPException(status.HTTP_409_CONFLICT, detail=str(error)) from error
        return RegistrationPublic(
            registration_id=registration.registration_id,
            dialogue_event_id=registration.dialogue_event_id,
            status=registration.status,
        )

    @router.get(
        "/internal/v1/registrations/{registration_id}/contact",
        response_model=Contact,
        tags=["internal"],
    )
    async def contact(registration_id: str, _: Service) -> Contact:
        try:
            participant = await handlers.contact(registration_id)
        except NotFound as error:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(error)) from error
        return Contact(
            registration_id=participant.registration_id,
            dialogue_event_id=participant.dialogue_event_id,
            name=participant.name,
            email=participant.email,
            language=participant.language,
        )

    return router
