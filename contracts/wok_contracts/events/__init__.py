"""All event payloads, one module per producing service.

Each module lists its payload classes in `EVENT_TYPES`; a new event is added to its
module only (this package collects them), so services can evolve their contracts apart.
"""

from wok_contracts.envelope import EventData
from wok_contracts.events import assessment, exchange, notification, registration, reporting
from wok_contracts.events.assessment import *  # noqa: F403
from wok_contracts.events.exchange import *  # noqa: F403
from wok_contracts.events.notification import *  # noqa: F403
from wok_contracts.events.registration import *  # noqa: F403
from wok_contracts.events.reporting import *  # noqa: F403

# The star imports above also bind each module's own EVENT_TYPES; all of them replace it.
EVENT_TYPES: tuple[type[EventData], ...] = (  # type: ignore[no-redef]
    registration.EVENT_TYPES
    + assessment.EVENT_TYPES
    + notification.EVENT_TYPES
    + reporting.EVENT_TYPES
    + exchange.EVENT_TYPES
)
