from __future__ import annotations

from typing import Any, Protocol

from wok_assessment.domain import KnownMunicipality


class MunicipalityDirectory(Protocol):
    async def remember(self, municipality: KnownMunicipality) -> None: ...

    async def get(self, ags: str) -> KnownMunicipality | None: ...


class MongoMunicipalityDirectory:
    def __init__(self, database: Any) -> None:
        self._collection = database["municipalities"]

    async def remember(self, municipality: KnownMunicipality) -> None:
        await self._collection.update_one(
            {"_id": municipality.ags},
            {"$set": {"name": municipality.name, "land": municipality.land}},
            upsert=True,
        )

    async def get(self, ags: str) -> KnownMunicipality | None:
        document = await self._collection.find_one({"_id": ags})
        if document is None:
            return None
        return KnownMunicipality(ags=document["_id"], name=document["name"], land=document["land"])


class InMemoryMunicipalityDirectory:
    def __init__(self) -> None:
        self.municipalities: dict[str, KnownMunicipality] = {}

    async def remember(self, municipality: KnownMunicipality) -> None:
        self.municipalities[municipality.ags] = municipality

    async def get(self, ags: str) -> KnownMunicipality | None:
        return self.municipalities.get(ags)
