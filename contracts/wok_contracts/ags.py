"""The AGS (Amtlicher Gemeindeschlüssel): 8 digits for a municipality, 5 for a district."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator

# [0-9], not \d (which takes any Unicode digit); fullmatch, since `$` accepts a trailing newline
_AGS_PATTERN = re.compile(r"[0-9]{5}|[0-9]{8}")

LANDS: dict[str, str] = {
    "01": "Schleswig-Holstein",
    "02": "Hamburg",
    "03": "Niedersachsen",
    "04": "Bremen",
    "05": "Nordrhein-Westfalen",
    "06": "Hessen",
    "07": "Rheinland-Pfalz",
    "08": "Baden-Württemberg",
    "09": "Bayern",
    "10": "Saarland",
    "11": "Berlin",
    "12": "Brandenburg",
    "13": "Mecklenburg-Vorpommern",
    "14": "Sachsen",
    "15": "Sachsen-Anhalt",
    "16": "Thüringen",
}


def validate_ags(value: str) -> str:
    """Return the AGS unchanged, or raise ValueError saying what is wrong with it."""
    if len(value) in (5, 8) and value.isascii() and value.isdigit() and value[:2] in LANDS:
        return value  # the usual case, without the pattern
    if not _AGS_PATTERN.fullmatch(value):
        raise ValueError(
            "AGS must be 8 digits (municipality) or 5 digits (district), e.g. 07312000"
        )
    if value[:2] not in LANDS:
        raise ValueError(f"AGS starts with Land code {value[:2]}, which is not one of 01-16")
    return value


def land_of(ags: str) -> str:
    """The two-digit Land code of an AGS."""
    return validate_ags(ags)[:2]


Ags = Annotated[str, AfterValidator(validate_ags)]
