from __future__ import annotations

from typing import Any

from wok_assessment.adapters.repository import MunicipalityDirectory
from wok_assessment.domain import KnownMunicipality
from wok_contracts import Envelope, MunicipalityRegistered


class AssessmentHandlers:
    def __init__(self, *, directory: MunicipalityDirectory) -> None:
        self.directory = directory

    async def remember_municipality(self, envelope: Envelope[Any]) -> None:
        data: MunicipalityRegistered = envelope.data
        await self.directory.remember(
            KnownMunicipality(ags=data.ags, name=data.name, land=data.land)
        )
