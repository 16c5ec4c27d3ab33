"""The seven fields of action (Handlungsfelder) set uniformly by the program."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldOfAction:
    number: int
    name_de: str
    name_en: str


FIELDS_OF_ACTION: tuple[FieldOfAction, ...] = (
    FieldOfAction(1, "Management und Steuerung", "Management and governance"),
    FieldOfAction(
        2,
        "Interkulturelle Öffnung und Antirassismus",
        "Intercultural opening and anti-racism",
    ),
    FieldOfAction(
        3,
        "Fairer Zugang und Teilhabechancen",
        "Fair access and opportunities to participate",
    ),
    FieldOfAction(4, "Arbeit und wirtschaftliche Entwicklung", "Work and economic development"),
    FieldOfAction(5, "Engagement und Beteiligung", "Engagement and participation"),
    FieldOfAction(6, "Zusammenhalt und Begegnung", "Cohesion and encounter"),
    FieldOfAction(
        7,
        "Kommunikation und Konfliktmanagement",
        "Communication and conflict management",
    ),
)


@dataclass(frozen=True)
class KnownMunicipality:
    """A model municipality as assessment knows it (from MunicipalityRegistered)."""

    ags: str
    name: str
    land: str
