"""HTTP routes: translate the wire into handler calls, and domain errors into clear 4xx.

No `from __future__ import annotations` here: FastAPI resolves the dependency aliases
defined inside `build_router` at runtime.

Who may write what (every other caller gets 403, a missing, unknown or revoked key 401):
onboarding and key rotation take the admin key; the profile and key revocation take the
admin key or the municipality's own; everything a municipality does with its dialogue
events and taskforce takes its own key. The federal office's key reads aggregates
elsewhere and writes nothing here.
"""

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from fastapi import (
    APIRouter,
    Depends,
    FastAPI,
    HTTPException,
    Path,
    Query,
    Request,
    Response,
    status,
)
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    model_validator,
)

from wok_contracts import (
    AgeBand,
    Ags,
    EventFormat,
    MigrationBackground,
    MunicipalityKind,
    RegistrationStatus,
    Sector,
    TaskforceRole,
    TaskforceSector,
)
from wok_registration import domain
from wok_registration.entrypoints import pages
from wok_registration.handlers import Conflict, Links, NotFound, RegistrationHandlers
from wok_registration.settings import RegistrationSettings
from wok_runtime.http_errors import install_error_handlers as install_domain_errors
from wok_runtime.http_errors import problem

bearer = HTTPBearer(auto_error=False)
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
AgsPath = Annotated[Ags, Path(description="AGS of the municipality, e.g. 07312000")]


def _name(value: str) -> str:
    try:
        return domain.clean_name(value)
    except domain.InvalidName as error:
        raise ValueError(str(error)) from error


PersonName = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_name)]
Language = Annotated[str, Field(pattern=r"^[a-z]{2}$")]
Office = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_name)]


class MunicipalityCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ags: Ags
    name: str = Field(min_length=1, max_length=200)
    kind: MunicipalityKind
    population: int | None = Field(default=None, ge=0)
    contact_office: Office | None = None
    contact_office_email: EmailStr | None = Field(
        default=None,
        description="The office's address for staff mails (e.g. self-check scored); not a"
        " person's. Never published, only handed to notification",
    )
    language: Language = Field(default="de", description="Language of staff mails")


class MunicipalityUpdate(BaseModel):
    """Only the fields given change; `population` and `contact_office` may be set to null."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    kind: MunicipalityKind | None = None
    population: int | None = Field(default=None, ge=0)
    contact_office: Office | None = None
    contact_office_email: EmailStr | None = None
    language: Language | None = None

    @model_validator(mode="after")
    def required_stay_set(self) -> "MunicipalityUpdate":
        for name in ("name", "kind", "language"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be removed")
        if not self.model_fields_set:
            raise ValueError("nothing to change")
        return self


class MunicipalityPublic(BaseModel):
    ags: str
    name: str
    kind: MunicipalityKind
    land: str
    population: int | None
    contact_office: str | None

    @classmethod
    def of(cls, municipality: domain.Municipality) -> "MunicipalityPublic":
        return cls(
            ags=municipality.ags,
            name=municipality.name,
            kind=municipality.kind,
            land=municipality.land,
            population=municipality.population,
            contact_office=municipality.contact_office,
        )


class MunicipalityCreated(MunicipalityPublic):
    api_key: str = Field(description="Shown once; store it safely")


class KeyRotated(BaseModel):
    ags: str
    api_key: str


class KeyRevoked(BaseModel):
    ags: str
    key_id: str
    revoked: bool = True


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
    reserved_places: int = Field(default=0, ge=0, le=100_000)
    registration_deadline: AwareDatetime
    languages: list[Language] = Field(default_factory=lambda: ["de"], min_length=1, max_length=20)
    target_sectors: list[Sector] = Field(default_factory=list, max_length=len(Sector))


class DialogueEventUpdate(BaseModel):
    """Only the fields given change; the times change through reschedule."""

    model_config = ConfigDict(extra="forbid")

    title: str | None = Field(default=None, min_length=1, max_length=300)
    description: str | None = Field(default=None, max_length=5000)
    format: EventFormat | None = None
    place: str | None = Field(default=None, max_length=500)
    online_link: str | None = Field(default=None, max_length=1000)
    capacity: int | None = Field(default=None, ge=1, le=100_000)
    reserved_places: int | None = Field(default=None, ge=0, le=100_000)
    registration_deadline: AwareDatetime | None = None
    languages: list[Language] | None = Field(default=None, min_length=1, max_length=20)
    target_sectors: list[Sector] | None = Field(default=None, max_length=len(Sector))

    @model_validator(mode="after")
    def required_stay_set(self) -> "DialogueEventUpdate":
        nullable = {"place", "online_link"}
        for name in self.model_fields_set - nullable:
            if getattr(self, name) is None:
                raise ValueError(f"{name} cannot be removed")
        if not self.model_fields_set:
            raise ValueError("nothing to change")
        return self


class DialogueEventReschedule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    starts_at: AwareDatetime
    ends_at: AwareDatetime
    registration_deadline: AwareDatetime | None = None
    place: str | None = Field(default=None, max_length=500)


class DialogueEventCancel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(default="", max_length=1000, description="Shown to participants")


class AttendanceCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    attended: int = Field(ge=0, le=100_000, description="How many came (a count, no names)")


class EventStatus(StrEnum):
    SCHEDULED = "scheduled"
    CANCELLED = "cancelled"


class DialogueEventPublic(BaseModel):
    """The public view; times in Europe/Berlin. The online link is never shown here."""

    id: str
    ags: str
    title: str
    description: str
    status: EventStatus
    starts_at: datetime
    ends_at: datetime
    timezone: str = "Europe/Berlin"
    when: str = Field(description="Date and time in words (German, Europe/Berlin)")
    format: EventFormat
    place: str | None
    capacity: int
    reserved_places: int
    places_left: int
    registration_deadline: datetime
    registration_open: bool
    languages: list[str]
    target_sectors: list[Sector]
    revision: int
    attended: int | None

    @classmethod
    def of(cls, event: domain.DialogueEvent, *, now: datetime) -> "DialogueEventPublic":
        return cls(
            id=event.id,
            ags=event.ags,
            title=event.title,
            description=event.description,
            status=EventStatus(event.state.value),
            starts_at=event.starts_at.astimezone(domain.BERLIN),
            ends_at=event.ends_at.astimezone(domain.BERLIN),
            when=domain.german_period(event.starts_at, event.ends_at),
            format=event.format,
            place=event.place,
            capacity=event.capacity,
            reserved_places=event.reserved_places,
            places_left=event.places_left,
            registration_deadline=event.registration_deadline.astimezone(domain.BERLIN),
            registration_open=not event.cancelled and now <= event.registration_deadline,
            languages=list(event.languages),
            target_sectors=list(event.target_sectors),
            revision=event.revision,
            attended=event.attended,
        )


class AccessInformation(BaseModel):
    dialogue_event_id: str
    status: EventStatus
    format: EventFormat
    place: str | None
    online_link: str | None = Field(description="null until released (or for in-person events)")
    online_link_released_at: datetime
    starts_at: datetime
    ends_at: datetime


class RegistrationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: PersonName
    email: EmailStr
    sector: Sector
    language: Language = "de"
    consent: Literal[True] = Field(
        description="Explicit consent to the privacy notice; registration is refused without it"
    )
    age_band: AgeBand | None = Field(
        default=None, description="Optional self-description; only ever counted, never shown"
    )
    migration_background: MigrationBackground | None = Field(
        default=None, description="Optional self-description; only ever counted, never shown"
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
    cancel_url: str = Field(description="Signed; valid until the event ends")
    erasure_url: str = Field(
        description="Signed; valid until WOK_ERASURE_LINK_TTL_DAYS after the event"
    )


MAX_CONTACTS_PER_LOOKUP = 500


class ContactsLookup(BaseModel):
    registration_ids: list[str] = Field(
        min_length=1,
        max_length=MAX_CONTACTS_PER_LOOKUP,
        description=f"1 to {MAX_CONTACTS_PER_LOOKUP} registration ids (a repeated one is"
        " answered once)",
    )


class Contacts(BaseModel):
    contacts: list[Contact] = Field(
        description="One per known registration, in no set order; unknown or erased ones are absent"
    )


class LinkOutcome(BaseModel):
    registration_id: str
    status: Literal["cancelled", "already_cancelled", "erased"]


class TaskforceMemberCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: PersonName
    email: EmailStr | None = None
    role: TaskforceRole
    sector: TaskforceSector
    language: Language = Field(default="de", description="Language of the member's mails")


class TaskforceMemberPublic(BaseModel):
    member_id: str
    ags: str
    name: str
    email: str | None
    role: TaskforceRole
    sector: TaskforceSector
    language: str = "de"

    @classmethod
    def of(cls, member: domain.TaskforceMember) -> "TaskforceMemberPublic":
        return cls(
            member_id=member.member_id,
            ags=member.ags,
            name=member.name,
            email=member.email,
            role=member.role,
            sector=member.sector,
            language=member.language,
        )


class TaskforceInvitee(BaseModel):
    member_id: str
    name: str
    email: str
    language: str


class TaskforceInvitees(BaseModel):
    dialogue_event_id: str
    ags: str
    registration_deadline: datetime
    invitees: list[TaskforceInvitee] = Field(
        description="Taskforce members with an address and no active registration for the"
        " event; empty once it is cancelled or its registration deadline has passed"
    )


class ContactOffice(BaseModel):
    ags: str
    name: str = Field(description="The municipality's name")
    contact_office: str | None
    email: str
    language: str


# -- access ------------------------------------------------------------------------------


class Role(StrEnum):
    ADMIN = "admin"
    FEDERAL = "federal"
    MUNICIPALITY = "municipality"


@dataclass(frozen=True)
class Caller:
    role: Role
    ags: str | None = None


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, detail=detail, headers={"WWW-Authenticate": "Bearer"}
    )


def _forbidden(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_403_FORBIDDEN, detail=detail)


def _field_error(field: str, reason: str) -> HTTPException:
    """A 422 shaped like FastAPI's own, naming the field."""
    return HTTPException(
        status.HTTP_422_UNPROCESSABLE_CONTENT,
        detail=[{"loc": ["body", field], "msg": reason, "type": "value_error"}],
    )


def _errors(error: Exception) -> HTTPException:
    if isinstance(error, NotFound):
        return HTTPException(status.HTTP_404_NOT_FOUND, detail=str(error))
    if isinstance(error, domain.InvalidSchedule):
        return _field_error(error.field, error.reason)
    if isinstance(error, Conflict | domain.DomainError):
        return HTTPException(status.HTTP_409_CONFLICT, detail=str(error))
    raise error


def install_error_handlers(app: FastAPI) -> None:
    """Domain errors become their 4xx once, for every route (see `_errors`)."""
    install_domain_errors(app, errors=(NotFound, Conflict, domain.DomainError), to_http=_errors)


def _wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "")


# What any route may answer besides its own responses (documented once for all of them).
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: problem("The body could not be read (not UTF-8 JSON)"),
    401: problem("No key, or an unknown or revoked one"),
    403: problem("The key (or the signed link) may not do this"),
    404: problem("No such municipality, dialogue event, registration or member"),
    409: problem("Not possible in the current state (e.g. already onboarded, deadline passed)"),
    410: problem("The signed link has expired"),
    413: problem("The request body is too large"),
    415: problem("The request body is not JSON"),
}


# The pages a signed link opens answer their problems as a page too.
PAGE_PROBLEMS: dict[int | str, dict[str, Any]] = {
    code: {"description": description, "content": {"text/html": {"schema": {"type": "string"}}}}
    for code, description in (
        (403, "The link is not valid"),
        (404, "No such registration"),
        (410, "The link has expired"),
    )
}


def build_router(handlers: RegistrationHandlers, settings: RegistrationSettings) -> APIRouter:
    router = APIRouter(responses=ERROR_RESPONSES)

    async def identify(credentials: Credentials) -> Caller:
        if credentials is None:
            raise _unauthorized("a key is required (Authorization: Bearer <key>)")
        presented = credentials.credentials
        if domain.keys_match(presented, settings.admin_key.get_secret_value()):
            return Caller(Role.ADMIN)
        if domain.keys_match(presented, settings.federal_key.get_secret_value()):
            return Caller(Role.FEDERAL)
        municipality = await handlers.municipality_for_key(presented)
        if municipality is None:
            raise _unauthorized("unknown or revoked key")
        return Caller(Role.MUNICIPALITY, municipality.ags)

    def _refuse_federal(caller: Caller) -> None:
        if caller.role is Role.FEDERAL:
            raise _forbidden("the federal office's key reads aggregates only; it writes nothing")

    async def require_admin(credentials: Credentials) -> None:
        caller = await identify(credentials)
        _refuse_federal(caller)
        if caller.role is not Role.ADMIN:
            raise _forbidden("this needs the admin key")

    async def require_admin_or_own(ags: AgsPath, credentials: Credentials) -> str:
        caller = await identify(credentials)
        _refuse_federal(caller)
        if caller.role is Role.MUNICIPALITY and caller.ags != ags:
            raise _forbidden(f"this key may act only for {caller.ags}")
        return ags

    async def require_own(ags: AgsPath, credentials: Credentials) -> str:
        caller = await identify(credentials)
        _refuse_federal(caller)
        if caller.role is Role.ADMIN:
            raise _forbidden("this needs the municipality's own key, not the admin key")
        if caller.ags != ags:
            raise _forbidden(f"this key may act only for {caller.ags}")
        return ags

    def require_service(credentials: Credentials) -> None:
        if credentials is None or not domain.keys_match(
            credentials.credentials, settings.service_key.get_secret_value()
        ):
            raise _unauthorized("a valid service key is required")

    Admin = Annotated[None, Depends(require_admin)]
    AdminOrOwn = Annotated[str, Depends(require_admin_or_own)]
    Own = Annotated[str, Depends(require_own)]
    Service = Annotated[None, Depends(require_service)]
    Expires = Annotated[int, Query(ge=0, le=2**40)]
    Signature = Annotated[str, Query(pattern=r"^[0-9a-f]{64}$")]

    def public(event: domain.DialogueEvent) -> DialogueEventPublic:
        return DialogueEventPublic.of(event, now=handlers.now())

    # -- the public registration, first: routes are matched in order, and it is the one
    # -- called most (each route tried before it costs a few µs, twice per request)

    @router.post(
        "/v1/dialogue-events/{dialogue_event_id}/registrations",
        status_code=status.HTTP_201_CREATED,
        response_model=RegistrationPublic,
        tags=["registrations"],
        # The same answer for an address registered before (its existing registration): a
        # different status would tell anyone whether an address is registered.
        response_description="Registered, or this address's existing registration for the event",
    )
    async def register_participant(
        dialogue_event_id: str, body: RegistrationCreate
    ) -> RegistrationPublic:
        registration = await handlers.register_participant(
            domain.RegistrationRequest(
                dialogue_event_id=dialogue_event_id,
                name=body.name,
                email=str(body.email),
                sector=body.sector,
                language=body.language,
                age_band=body.age_band,
                migration_background=body.migration_background,
            )
        )
        return RegistrationPublic(
            registration_id=registration.registration_id,
            dialogue_event_id=registration.dialogue_event_id,
            status=registration.status,
        )

    # -- municipalities ----------------------------------------------------------------

    @router.post(
        "/v1/municipalities",
        status_code=status.HTTP_201_CREATED,
        response_model=MunicipalityCreated,
        tags=["municipalities"],
    )
    async def onboard_municipality(body: MunicipalityCreate, _: Admin) -> MunicipalityCreated:
        municipality, api_key = await handlers.onboard_municipality(
            ags=body.ags,
            name=body.name,
            kind=body.kind,
            population=body.population,
            contact_office=body.contact_office,
            contact_office_email=str(body.contact_office_email)
            if body.contact_office_email
            else None,
            language=body.language,
        )
        return MunicipalityCreated(
            **MunicipalityPublic.of(municipality).model_dump(), api_key=api_key
        )

    @router.get(
        "/v1/municipalities/{ags}", response_model=MunicipalityPublic, tags=["municipalities"]
    )
    async def get_municipality(ags: AgsPath) -> MunicipalityPublic:
        return MunicipalityPublic.of(await handlers.get_municipality(ags))

    @router.patch(
        "/v1/municipalities/{ags}", response_model=MunicipalityPublic, tags=["municipalities"]
    )
    async def update_profile(body: MunicipalityUpdate, ags: AdminOrOwn) -> MunicipalityPublic:
        changes = body.model_dump(include=body.model_fields_set)
        if changes.get("contact_office_email") is not None:
            changes["contact_office_email"] = str(changes["contact_office_email"])
        municipality = await handlers.update_profile(ags=ags, changes=changes)
        return MunicipalityPublic.of(municipality)

    @router.post(
        "/v1/municipalities/{ags}/keys",
        status_code=status.HTTP_201_CREATED,
        response_model=KeyRotated,
        tags=["municipalities"],
    )
    async def rotate_key(ags: AgsPath, _: Admin) -> KeyRotated:
        return KeyRotated(ags=ags, api_key=await handlers.rotate_key(ags=ags))

    @router.delete(
        "/v1/municipalities/{ags}/keys", response_model=KeyRevoked, tags=["municipalities"]
    )
    async def revoke_key(ags: AdminOrOwn) -> KeyRevoked:
        return KeyRevoked(ags=ags, key_id=await handlers.revoke_key(ags=ags))

    # -- dialogue events ---------------------------------------------------------------

    @router.post(
        "/v1/municipalities/{ags}/dialogue-events",
        status_code=status.HTTP_201_CREATED,
        response_model=DialogueEventPublic,
        tags=["dialogue events"],
    )
    async def schedule_dialogue_event(body: DialogueEventCreate, ags: Own) -> DialogueEventPublic:
        fields = body.model_dump()
        fields["languages"] = tuple(fields["languages"])
        fields["target_sectors"] = tuple(body.target_sectors)
        event = await handlers.schedule_dialogue_event(ags=ags, fields=fields)
        return public(event)

    @router.get(
        "/v1/dialogue-events/{dialogue_event_id}",
        response_model=DialogueEventPublic,
        tags=["dialogue events"],
    )
    async def get_dialogue_event(dialogue_event_id: str) -> DialogueEventPublic:
        return public(await handlers.get_dialogue_event(dialogue_event_id))

    @router.patch(
        "/v1/municipalities/{ags}/dialogue-events/{dialogue_event_id}",
        response_model=DialogueEventPublic,
        tags=["dialogue events"],
    )
    async def change_dialogue_event(
        dialogue_event_id: str, body: DialogueEventUpdate, ags: Own
    ) -> DialogueEventPublic:
        changes: dict[str, Any] = {name: getattr(body, name) for name in body.model_fields_set}
        for name in ("languages", "target_sectors"):
            if name in changes:
                changes[name] = tuple(changes[name])
        event = await handlers.change_dialogue_event(
            ags=ags, dialogue_event_id=dialogue_event_id, changes=changes
        )
        return public(event)

    @router.post(
        "/v1/municipalities/{ags}/dialogue-events/{dialogue_event_id}/reschedule",
        response_model=DialogueEventPublic,
        tags=["dialogue events"],
    )
    async def reschedule_dialogue_event(
        dialogue_event_id: str, body: DialogueEventReschedule, ags: Own
    ) -> DialogueEventPublic:
        event = await handlers.reschedule_dialogue_event(
            ags=ags,
            dialogue_event_id=dialogue_event_id,
            starts_at=body.starts_at,
            ends_at=body.ends_at,
            registration_deadline=body.registration_deadline,
            place=body.place,
        )
        return public(event)

    @router.post(
        "/v1/municipalities/{ags}/dialogue-events/{dialogue_event_id}/cancel",
        response_model=DialogueEventPublic,
        tags=["dialogue events"],
    )
    async def cancel_dialogue_event(
        dialogue_event_id: str, body: DialogueEventCancel, ags: Own
    ) -> DialogueEventPublic:
        event = await handlers.cancel_dialogue_event(
            ags=ags, dialogue_event_id=dialogue_event_id, reason=body.reason
        )
        return public(event)

    @router.post(
        "/v1/municipalities/{ags}/dialogue-events/{dialogue_event_id}/attendance",
        response_model=DialogueEventPublic,
        tags=["dialogue events"],
    )
    async def record_attendance(
        dialogue_event_id: str, body: AttendanceCreate, ags: Own
    ) -> DialogueEventPublic:
        event = await handlers.record_attendance(
            ags=ags, dialogue_event_id=dialogue_event_id, attended=body.attended
        )
        return public(event)

    @router.get(
        "/internal/v1/dialogue-events/{dialogue_event_id}/access",
        response_model=AccessInformation,
        tags=["internal"],
    )
    async def access(dialogue_event_id: str, _: Service) -> AccessInformation:
        found = await handlers.access(dialogue_event_id)
        return AccessInformation(
            dialogue_event_id=found.event.id,
            status=EventStatus(found.event.state.value),
            format=found.event.format,
            place=found.event.place,
            online_link=found.online_link,
            online_link_released_at=found.online_link_released_at,
            starts_at=found.event.starts_at,
            ends_at=found.event.ends_at,
        )

    # -- participants ------------------------------------------------------------------

    @router.get(
        "/internal/v1/registrations/{registration_id}/contact",
        response_model=Contact,
        tags=["internal"],
    )
    async def contact(registration_id: str, _: Service) -> Contact:
        return _contact(*await handlers.contact(registration_id))

    @router.post(
        "/internal/v1/registrations/contacts",
        response_model=Contacts,
        tags=["internal"],
    )
    async def contacts(body: ContactsLookup, _: Service) -> Contacts:
        """Many contacts at once (notification's batches): the same as the single lookup."""
        found = await handlers.contacts(body.registration_ids)
        return Contacts(contacts=[_contact(participant, links) for participant, links in found])

    def check_link(
        action: domain.LinkAction, registration_id: str, expires: int, signature: str
    ) -> None:
        try:
            handlers.verify_link(
                action=action,
                registration_id=registration_id,
                expires=expires,
                signature=signature,
            )
        except domain.ExpiredLink as error:
            raise HTTPException(status.HTTP_410_GONE, detail=str(error)) from error
        except domain.InvalidLink as error:
            raise _forbidden(str(error)) from error

    def linkproblem(error: HTTPException) -> HTMLResponse:
        return HTMLResponse(
            pages.problem("Link nicht gültig", _german_linkproblem(error.status_code)),
            status_code=error.status_code,
        )

    @router.get(
        "/v1/registrations/{registration_id}/cancel",
        response_class=HTMLResponse,
        tags=["registrations"],
        responses=PAGE_PROBLEMS,
    )
    async def cancel_page(
        request: Request, registration_id: str, expires: Expires, signature: Signature
    ) -> Response:
        try:
            check_link(domain.LinkAction.CANCEL, registration_id, expires, signature)
        except HTTPException as error:
            return linkproblem(error)
        view = await handlers.registration_view(registration_id)
        if view is None:
            return HTMLResponse(
                pages.problem("Anmeldung nicht gefunden", "Diese Anmeldung gibt es nicht mehr."),
                status_code=404,
            )
        event, record = view
        if record.status is domain.RecordStatus.CANCELLED:
            return HTMLResponse(pages.cancelled(event))
        return HTMLResponse(pages.confirm_cancel(event, str(request.url)))

    @router.post(
        "/v1/registrations/{registration_id}/cancel",
        response_model=LinkOutcome,
        tags=["registrations"],
    )
    async def cancel_registration(
        request: Request, registration_id: str, expires: Expires, signature: Signature
    ) -> Response:
        html = _wants_html(request)
        try:
            check_link(domain.LinkAction.CANCEL, registration_id, expires, signature)
            cancelled_now = await handlers.cancel_registration(registration_id)
        except HTTPException as error:
            if html:
                return linkproblem(error)
            raise
        except (NotFound, Conflict, domain.DomainError) as error:
            failure = _errors(error)
            if html:
                return HTMLResponse(
                    pages.problem("Stornierung nicht möglich", str(failure.detail)),
                    status_code=failure.status_code,
                )
            raise failure from error
        if html:
            view = await handlers.registration_view(registration_id)
            return HTMLResponse(pages.cancelled(view[0] if view else None))
        return JSONResponse(
            LinkOutcome(
                registration_id=registration_id,
                status="cancelled" if cancelled_now else "already_cancelled",
            ).model_dump()
        )

    @router.get(
        "/v1/registrations/{registration_id}/erasure",
        response_class=HTMLResponse,
        tags=["registrations"],
        responses=PAGE_PROBLEMS,
    )
    async def erasure_page(
        request: Request, registration_id: str, expires: Expires, signature: Signature
    ) -> Response:
        try:
            check_link(domain.LinkAction.ERASURE, registration_id, expires, signature)
        except HTTPException as error:
            return linkproblem(error)
        view = await handlers.registration_view(registration_id)
        if view is None:
            return HTMLResponse(pages.erased())
        return HTMLResponse(pages.confirm_erasure(view[0], str(request.url)))

    @router.post(
        "/v1/registrations/{registration_id}/erasure",
        response_model=LinkOutcome,
        tags=["registrations"],
    )
    async def erase_participant(
        request: Request, registration_id: str, expires: Expires, signature: Signature
    ) -> Response:
        html = _wants_html(request)
        try:
            check_link(domain.LinkAction.ERASURE, registration_id, expires, signature)
        except HTTPException as error:
            if html:
                return linkproblem(error)
            raise
        await handlers.erase_participant(registration_id)
        if html:
            return HTMLResponse(pages.erased())
        return JSONResponse(
            LinkOutcome(registration_id=registration_id, status="erased").model_dump()
        )

    # -- taskforce ---------------------------------------------------------------------

    @router.post(
        "/v1/municipalities/{ags}/taskforce",
        status_code=status.HTTP_201_CREATED,
        response_model=TaskforceMemberPublic,
        tags=["taskforce"],
    )
    async def add_taskforce_member(body: TaskforceMemberCreate, ags: Own) -> TaskforceMemberPublic:
        member = await handlers.add_taskforce_member(
            ags=ags,
            name=body.name,
            email=str(body.email) if body.email else None,
            role=body.role,
            sector=body.sector,
            language=body.language,
        )
        return TaskforceMemberPublic.of(member)

    @router.get(
        "/v1/municipalities/{ags}/taskforce",
        response_model=list[TaskforceMemberPublic],
        tags=["taskforce"],
    )
    async def taskforce_members(ags: AdminOrOwn) -> list[TaskforceMemberPublic]:
        return [TaskforceMemberPublic.of(m) for m in await handlers.taskforce_members(ags)]

    @router.delete(
        "/v1/municipalities/{ags}/taskforce/{member_id}",
        status_code=status.HTTP_204_NO_CONTENT,
        tags=["taskforce"],
    )
    async def remove_taskforce_member(member_id: str, ags: Own) -> Response:
        await handlers.remove_taskforce_member(ags=ags, member_id=member_id)
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    @router.get(
        "/internal/v1/dialogue-events/{dialogue_event_id}/taskforce-invitees",
        response_model=TaskforceInvitees,
        tags=["internal"],
    )
    async def taskforce_invitees(dialogue_event_id: str, _: Service) -> TaskforceInvitees:
        """Whom notification reminds of the registration deadline (names and addresses
        leave registration only here and in the contact lookup, to notification)."""
        event, members = await handlers.taskforce_invitees(dialogue_event_id)
        return TaskforceInvitees(
            dialogue_event_id=event.id,
            ags=event.ags,
            registration_deadline=event.registration_deadline,
            invitees=[
                TaskforceInvitee(
                    member_id=m.member_id, name=m.name, email=m.email or "", language=m.language
                )
                for m in members
            ],
        )

    @router.get(
        "/internal/v1/municipalities/{ags}/contact-office",
        response_model=ContactOffice,
        tags=["internal"],
        responses={404: {"description": "Unknown municipality, or no office address set"}},
    )
    async def contact_office(ags: AgsPath, _: Service) -> ContactOffice:
        """Where staff mails of the municipality go (an institutional address)."""
        municipality = await handlers.get_municipality(ags)
        if not municipality.contact_office_email:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no contact office address set")
        return ContactOffice(
            ags=municipality.ags,
            name=municipality.name,
            contact_office=municipality.contact_office,
            email=municipality.contact_office_email,
            language=municipality.language,
        )

    return router


def _contact(participant: domain.Participant, links: Links) -> Contact:
    return Contact(
        registration_id=participant.registration_id,
        dialogue_event_id=participant.dialogue_event_id,
        name=participant.name,
        email=participant.email,
        language=participant.language,
        cancel_url=links.cancel_url,
        erasure_url=links.erasure_url,
    )


def _german_linkproblem(status_code: int) -> str:
    if status_code == status.HTTP_410_GONE:
        return "Dieser Link ist abgelaufen."
    return "Dieser Link ist nicht gültig. Bitte verwenden Sie den Link aus Ihrer E-Mail."
