"""The shared language of the platform: CloudEvents envelope, event contracts, topic names."""

from wok_contracts.ags import LANDS, Ags, land_of, validate_ags
from wok_contracts.envelope import CONTENT_TYPE, Envelope, EventData, new_envelope
from wok_contracts.events import *  # noqa: F403  (every payload, as `wok_contracts.X`)
from wok_contracts.events import (
    AggregateScope,
    AggregateSnapshot,
    DialogueEventScheduled,
    EventFormat,
    MunicipalityKind,
    MunicipalityRegistered,
    NotificationKind,
    NotificationSent,
    ParticipantRegistered,
    RegistrationStatus,
    Sector,
)
from wok_contracts.registry import REGISTRY, ContractError, decode_envelope

__all__ = [
    "CONTENT_TYPE",
    "LANDS",
    "REGISTRY",
    "AggregateScope",
    "AggregateSnapshot",
    "Ags",
    "ContractError",
    "DialogueEventScheduled",
    "Envelope",
    "EventData",
    "EventFormat",
    "MunicipalityKind",
    "MunicipalityRegistered",
    "NotificationKind",
    "NotificationSent",
    "ParticipantRegistered",
    "RegistrationStatus",
    "Sector",
    "decode_envelope",
    "land_of",
    "new_envelope",
    "validate_ags",
]
