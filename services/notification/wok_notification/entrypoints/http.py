"""HTTP routes: the delivery log (ids and states only: no bodies, no addresses; `held` and
the digest a message waits in or went out with) and the operator's redrive of a mail given
up during a mail server outage.

No `from __future__ import annotations` here: FastAPI resolves the dependency aliases
defined inside `build_router` at runtime.
"""

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel

from wok_contracts import NotificationKind
from wok_notification import domain
from wok_notification.handlers import DeliveryNotFound, NotificationHandlers
from wok_notification.settings import NotificationSettings
from wok_runtime.http_errors import problem

bearer = HTTPBearer(auto_error=False)
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


class DeliveryPublic(BaseModel):
    id: str
    kind: NotificationKind
    registration_id: str
    dialogue_event_id: str
    status: domain.DeliveryStatus
    sent_at: datetime | None
    revision: int | None = None
    attempts: int = 0
    failed_at: datetime | None = None
    failure_reason: str | None = None
    digest_id: str | None = None

    @classmethod
    def of(cls, delivery: domain.Delivery) -> "DeliveryPublic":
        return cls(
            id=delivery.id,
            kind=delivery.kind,
            registration_id=delivery.registration_id,
            dialogue_event_id=delivery.dialogue_event_id,
            status=delivery.status,
            sent_at=delivery.sent_at,
            revision=delivery.revision,
            attempts=delivery.attempts,
            failed_at=delivery.failed_at,
            failure_reason=delivery.failure_reason,
            digest_id=delivery.digest_id,
        )


# What any route may answer besides its own responses (documented once for all of them).
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: problem("No service key, or a wrong one"),
    404: problem("No such delivery"),
    409: problem("The delivery is not undeliverable"),
}


def build_router(handlers: NotificationHandlers, settings: NotificationSettings) -> APIRouter:
    router = APIRouter(responses=ERROR_RESPONSES)

    def require_service(credentials: Credentials) -> None:
        if credentials is None or not domain.keys_match(
            credentials.credentials, settings.service_key.get_secret_value()
        ):
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                detail="a valid service key is required",
                headers={"WWW-Authenticate": "Bearer"},
            )

    Service = Annotated[None, Depends(require_service)]

    @router.get("/v1/deliveries", response_model=list[DeliveryPublic], tags=["deliveries"])
    async def list_deliveries(
        _: Service,
        limit: Annotated[int, Query(ge=1, le=1000, description="Newest first")] = 100,
        delivery_status: Annotated[domain.DeliveryStatus | None, Query(alias="status")] = None,
        kind: NotificationKind | None = None,
    ) -> list[DeliveryPublic]:
        found = await handlers.list_deliveries(
            limit=limit,
            status=delivery_status.value if delivery_status else None,
            kind=kind.value if kind else None,
        )
        return [DeliveryPublic.of(d) for d in found]

    @router.post(
        "/v1/deliveries/{delivery_id}/redrive", response_model=DeliveryPublic, tags=["deliveries"]
    )
    async def redrive(delivery_id: str, _: Service) -> DeliveryPublic:
        """Try an undeliverable mail (given up during an outage) once more; 409 otherwise."""
        try:
            return DeliveryPublic.of(await handlers.redrive(delivery_id))
        except DeliveryNotFound as error:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such delivery") from error
        except domain.DeliveryStateError as error:
            raise HTTPException(status.HTTP_409_CONFLICT, detail=str(error)) from error

    return router
