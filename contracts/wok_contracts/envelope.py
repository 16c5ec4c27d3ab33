"""The CloudEvents 1.0 envelope (structured JSON mode), generic over the Pydantic `data`."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from wok_contracts.ags import Ags

CONTENT_TYPE = "application/cloudevents+json"

DataT = TypeVar("DataT", bound=BaseModel)


class EventData(BaseModel):
    """Base of every event payload. `event_type` is the CloudEvents `type` it travels under.

    Unknown fields are ignored, not refused: a newer producer may add optional fields to a
    `.v1` type, and consumers built against the older model must still accept its events.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    event_type: ClassVar[str]


class Envelope(BaseModel, Generic[DataT]):
    """A CloudEvents 1.0 envelope; `municipality` and `correlationid` are extension attributes."""

    model_config = ConfigDict(extra="allow")

    specversion: str = "1.0"
    id: str = Field(default_factory=lambda: str(uuid.uuid4()))
    source: str = Field(min_length=1)
    type: str
    time: datetime = Field(default_factory=lambda: datetime.now(UTC))
    subject: str | None = None
    datacontenttype: str = "application/json"
    municipality: Ags | None = None
    correlationid: str = Field(default_factory=lambda: str(uuid.uuid4()))
    data: DataT

    def to_json_bytes(self) -> bytes:
        """Structured-mode JSON; unset optional attributes are left out, `data` stays whole."""
        unset = {name for name in ("subject", "municipality") if getattr(self, name) is None}
        return self.model_dump_json(exclude=unset).encode()


# `Envelope[type]` per payload type: subscripting looks it up in pydantic's cache each time.
_PARAMETRIZED: dict[type[EventData], type[Envelope[Any]]] = {}


def new_envelope(
    data: EventData,
    *,
    source: str,
    municipality: str | None,
    subject: str | None = None,
    correlation_id: str | None = None,
) -> Envelope[Any]:
    """Wrap an event payload; the type comes from the payload class."""
    fields: dict[str, Any] = {
        "source": source,
        "type": data.event_type,
        "municipality": municipality,
        "subject": subject,
        "data": data,
    }
    if correlation_id:
        fields["correlationid"] = correlation_id
    model = _PARAMETRIZED.get(type(data))
    if model is None:
        # parametrized at run time: the payload's class is only known here
        parametrized: Any = Envelope[type(data)]  # type: ignore[misc]
        model = _PARAMETRIZED[type(data)] = parametrized
    return model(**fields)
