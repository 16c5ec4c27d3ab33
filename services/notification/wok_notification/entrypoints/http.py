"""HTTP routes: the delivery log (ids and states only: no bodies, no addresses).

No `from __future__ import annotations` here: FastAPI resolves the dependency aliases
defined inside `build_router` at runtime.
"""

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel

from wok_contracts import NotificationKind
from wok_notification import domain
from wok_notification.handlers import NotificationHandlers
from wok_notification.settings import NotificationSettings

bearer = HTTPBearer(auto_error=False)
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


class DeliveryPublic(BaseModel):
    id: str
    kind: NotificationKind
    registration_id: str
    dialogue_event_id: str
    status: domain.DeliveryStatus
    sent_at: datetime | None

    @classmethod
    def of(cls, delivery: domain.Delivery) -> "DeliveryPublic":
        return cls(
            id=delivery.id,
            kind=delivery.kind,
            registration_id=delivery.registration_id,
            dialogue_event_id=delivery.dialogue_event_id,
            status=delivery.status,
            sent_at=delivery.sent_at,
        )


def build_router(handlers: NotificationHandlers, settings: NotificationSettings) -> APIRouter:
    router = APIRouter()

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
    ) -> list[DeliveryPublic]:
        return [DeliveryPublic.of(d) for d in await handlers.list_deliveries(limit=limit)]

    return router
