"""The field report page: an HTML document with an inline SVG radar chart of the seven fields.

Rendering only: the figures come from the handlers (`Report`); nothing is computed here
beyond placing them on the page. Printable as it is (print styles, no scripts).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

from jinja2 import Environment, PackageLoader, select_autoescape

from wok_assessment.handlers import Report

RADAR_SIZE = 420
RADAR_RADIUS = 150
RADAR_MARGIN = 150  # room beside the chart for the axis names
RINGS = (25, 50, 75, 100)
LABEL_LINE_CHARS = 24

LABELS = {
    "de": {
        "title": "Feldbericht",
        "navigation": "Bericht",
        "as_pdf": "Als PDF",
        "other_lang": "en",
        "other_language": "English",
        "print_hint": "Druckansicht: Drucken im Browser (ohne diese Leiste)",
        "no_self_check": "Es wurde noch kein Selbstcheck eingereicht.",
        "self_check": "Selbstcheck",
        "submitted": "eingereicht am",
        "catalogue": "Katalogversion",
        "overall": "Gesamtindex",
        "field": "Handlungsfeld",
        "score": "Wert",
        "level": "Stufe",
        "coverage": "beantwortet",
        "rank": "Rang",
        "band": "Lage unter den Modellkommunen",
        "quartiles": "Q1 / Median / Q3",
        "change": "Veränderung",
        "radar": (
            "Werte je Handlungsfeld (Linie: eigene Werte, gestrichelt: Median aller Modellkommunen)"
        ),
        "perspectives": "Perspektiven aus dem Workshop",
        "group": "Gruppe",
        "participants": "Teilnehmende",
        "mean": "Mittelwert",
        "gap": "Abstand zum Selbstcheck",
        "no_perspectives": "Noch keine Perspektiven erfasst.",
        "too_few": "zu wenige Bewertungen",
        "min_group": (
            "Ein Mittelwert erscheint erst ab %d Bewertungen einer Gruppe je Workshop, damit "
            "keine einzelne Bewertung erkennbar ist (* = ohne Workshops mit zu wenigen)."
        ),
        "deficits": "Handlungsbedarf und Anregungen",
        "no_deficits": "Kein Handlungsfeld liegt unter der Schwelle für Handlungsbedarf.",
        "open_points": "Offene Punkte",
        "measures": "Maßnahmen",
        "no_measures": "Noch keine Maßnahmen geplant.",
        "title_col": "Maßnahme",
        "owner": "verantwortlich",
        "status": "Status",
        "dates": "Zeitraum",
        "strengths": "Stärken",
        "top_quarter": "oberes Viertel",
        "upper_middle": "obere Mitte",
        "lower_middle": "untere Mitte",
        "bottom_quarter": "unteres Viertel",
        "planned": "geplant",
        "running": "läuft",
        "done": "abgeschlossen",
        "dropped": "verworfen",
    },
    "en": {
        "title": "Field report",
        "navigation": "Report",
        "as_pdf": "As PDF",
        "other_lang": "de",
        "other_language": "Deutsch",
        "print_hint": "Printable: print from the browser (without this bar)",
        "no_self_check": "No self-check has been submitted yet.",
        "self_check": "Self-check",
        "submitted": "submitted on",
        "catalogue": "catalogue version",
        "overall": "Overall index",
        "field": "Field of action",
        "score": "Score",
        "level": "Level",
        "coverage": "answered",
        "rank": "Rank",
        "band": "Among the model municipalities",
        "quartiles": "Q1 / median / Q3",
        "change": "Change",
        "radar": "Score per field (line: own scores, dashed: median of all model municipalities)",
        "perspectives": "Workshop perspectives",
        "group": "Group",
        "participants": "Participants",
        "mean": "Mean",
        "gap": "Gap to the self-check",
        "no_perspectives": "No perspectives recorded yet.",
        "too_few": "too few ratings",
        "min_group": (
            "A group's mean is shown only from %d ratings per workshop on, so that no single "
            "rating can be told (* = without workshops with too few)."
        ),
        "deficits": "Where to act, and suggestions",
        "no_deficits": "No field is below the threshold for action.",
        "open_points": "Open points",
        "measures": "Measures",
        "no_measures": "No measures planned yet.",
        "title_col": "Measure",
        "owner": "owner",
        "status": "Status",
        "dates": "Period",
        "strengths": "Strengths",
        "top_quarter": "top quarter",
        "upper_middle": "upper middle",
        "lower_middle": "lower middle",
        "bottom_quarter": "bottom quarter",
        "planned": "planned",
        "running": "running",
        "done": "done",
        "dropped": "dropped",
    },
}


@dataclass(frozen=True)
class RadarAxis:
    number: int
    x: float
    y: float
    label_x: float
    label_y: float
    anchor: str


@dataclass(frozen=True)
class Radar:
    size: int
    margin: int
    center: float
    axes: tuple[RadarAxis, ...]
    rings: tuple[tuple[int, str], ...]
    own: str | None
    median: str | None
    own_points: tuple[tuple[float, float, float], ...]


def _point(index: int, value: float) -> tuple[float, float]:
    angle = -math.pi / 2 + 2 * math.pi * index / 7
    center = RADAR_SIZE / 2
    radius = RADAR_RADIUS * value / 100
    return round(center + radius * math.cos(angle), 1), round(center + radius * math.sin(angle), 1)


def _polygon(values: Sequence[float]) -> str:
    return " ".join(f"{x},{y}" for x, y in (_point(i, v) for i, v in enumerate(values)))


def radar(own: Sequence[float | None], median: Sequence[float | None]) -> Radar:
    """Geometry of the radar chart: a field without a score sits at the centre."""
    axes = []
    for index in range(7):
        x, y = _point(index, 100)
        label_x, label_y = _point(index, 116)
        anchor = (
            "middle"
            if abs(label_x - RADAR_SIZE / 2) < 10
            else ("start" if label_x > RADAR_SIZE / 2 else "end")
        )
        axes.append(RadarAxis(index + 1, x, y, label_x, label_y + 4, anchor))
    has_own = any(value is not None for value in own)
    has_median = any(value is not None for value in median)
    return Radar(
        size=RADAR_SIZE,
        margin=RADAR_MARGIN,
        center=RADAR_SIZE / 2,
        axes=tuple(axes),
        rings=tuple((ring, _polygon([ring] * 7)) for ring in RINGS),
        own=_polygon([value or 0 for value in own]) if has_own else None,
        median=_polygon([value or 0 for value in median]) if has_median else None,
        own_points=tuple(
            (*_point(index, value), value) for index, value in enumerate(own) if value is not None
        ),
    )


def label_lines(label: str, *, width: int = LABEL_LINE_CHARS) -> tuple[str, ...]:
    """A long axis label on two lines (at the space nearest the middle), so it fits the chart."""
    if len(label) <= width or " " not in label:
        return (label,)
    middle = len(label) / 2
    cut = min((i for i, c in enumerate(label) if c == " "), key=lambda i: abs(i - middle))
    return label[:cut], label[cut + 1 :]


@cache
def _environment() -> Environment:
    environment = Environment(
        loader=PackageLoader("wok_assessment", "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["label_lines"] = label_lines
    return environment


def render_report(
    report: Report, *, language: str = "de", link_query: dict[str, str] | None = None
) -> str:
    """The page; `link_query` (a signed link's parameters) is carried on to the PDF and the
    other language, so a reader who came by a mail's link can follow them."""
    labels = LABELS["en" if language == "en" else "de"]
    own = [f.score for f in report.result.assessment.fields] if report.result else [None] * 7
    median = [b.median for b in report.benchmark]
    measures_by_field = {n: [m for m in report.measures if m.field == n] for n in range(1, 8)}
    return (
        _environment()
        .get_template("report.html")
        .render(
            report=report,
            lang="en" if language == "en" else "de",
            link_suffix="".join(f"&{name}={value}" for name, value in (link_query or {}).items()),
            t=labels,
            radar=radar(own, median),
            catalogue=report.catalogue,
            result=report.result,
            benchmark={b.field: b for b in report.benchmark},
            perspectives={p.field: p for p in report.perspectives.fields},
            progress={p.field: p for p in (report.result.progress or ())} if report.result else {},
            measures_by_field=measures_by_field,
            question_texts={q.id: q.text for f in report.catalogue.fields for q in f.questions},
        )
    )
