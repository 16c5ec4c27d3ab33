"""The field report as a PDF (fpdf2, pure Python): the same content as the HTML page, with the
radar chart drawn as vector paths.

Rendering only, like `report.py`: the figures come from the handlers (`Report`). Text is set
in the standard PDF font Helvetica (no font files), which covers Windows-1252 (German,
English and the other Western European languages); a character outside it, e.g. in a
measure title written in another script, is printed as "?" (the HTML report shows it).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from fpdf import FPDF
from fpdf.enums import XPos, YPos
from fpdf.fonts import FontFace

from wok_assessment.handlers import Report
from wok_assessment.report import LABELS, RINGS

FONT = "Helvetica"
ENCODING = "windows-1252"
RADIUS_MM = 38.0
DARK = (29, 39, 51)
GREY = (120, 120, 136)
LIGHT = (204, 204, 221)
BLUE = (42, 111, 151)
RED = (179, 38, 30)
HEADING_FILL = (243, 245, 248)


def _plain(text: str) -> str:
    """Text the standard font can show; anything else becomes '?'."""
    return text.encode(ENCODING, "replace").decode(ENCODING)


def _number(value: float | None, pattern: str = "%.1f") -> str:
    return pattern % value if value is not None else "–"


def _radar_point(index: int, value: float, *, cx: float, cy: float) -> tuple[float, float]:
    angle = -math.pi / 2 + 2 * math.pi * index / 7
    radius = RADIUS_MM * value / 100
    return cx + radius * math.cos(angle), cy + radius * math.sin(angle)


class _ReportPdf(FPDF):
    def __init__(self, *, footer_text: str) -> None:
        super().__init__(orientation="P", unit="mm", format="A4")
        self.core_fonts_encoding = ENCODING
        self._footer_text = footer_text

    def footer(self) -> None:
        self.set_y(-12)
        self.set_font(FONT, size=8)
        self.set_text_color(*GREY)
        self.cell(0, 5, f"{self._footer_text} · {self.page_no()}/{{nb}}", align="C")

    def heading(self, text: str, *, size: float = 13) -> None:
        self.ln(3)
        self.set_font(FONT, "B", size)
        self.set_text_color(*DARK)
        self.multi_cell(0, size * 0.5, _plain(text), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.set_font(FONT, size=9.5)

    def paragraph(
        self, text: str, *, color: tuple[int, int, int] = DARK, size: float = 9.5
    ) -> None:
        self.set_font(FONT, size=size)
        self.set_text_color(*color)
        self.multi_cell(0, 4.8, _plain(text), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.set_text_color(*DARK)

    def grid(
        self, header: Sequence[str], rows: Sequence[Sequence[str]], widths: Sequence[int]
    ) -> None:
        self.set_font(FONT, size=8.5)
        self.set_draw_color(*LIGHT)
        self.set_fill_color(255, 255, 255)
        self.set_text_color(*DARK)
        with self.table(
            col_widths=tuple(widths),
            line_height=4.6,
            headings_style=FontFace(emphasis="BOLD", fill_color=HEADING_FILL),
            borders_layout="HORIZONTAL_LINES",
            text_align="LEFT",
        ) as table:
            for cells in [header, *rows]:
                row = table.row()
                for text in cells:
                    row.cell(_plain(text))
        self.set_font(FONT, size=9.5)


def _draw_radar(pdf: _ReportPdf, report: Report, *, lang: str, caption: str) -> None:
    """Rings, axes, the median (dashed) and the own scores (filled), all vector paths."""
    if pdf.get_y() + 2 * RADIUS_MM + 30 > pdf.h - pdf.b_margin:
        pdf.add_page()
    cx = pdf.w / 2
    cy = pdf.get_y() + RADIUS_MM + 10
    own = [f.score for f in report.result.assessment.fields] if report.result else [None] * 7
    median = [b.median for b in report.benchmark]
    pdf.set_line_width(0.2)
    pdf.set_draw_color(*LIGHT)
    for ring in RINGS:
        pdf.polygon([_radar_point(i, ring, cx=cx, cy=cy) for i in range(7)], style="D")
    pdf.set_font(FONT, size=7)
    pdf.set_text_color(*DARK)
    for index in range(7):
        x, y = _radar_point(index, 100, cx=cx, cy=cy)
        pdf.line(cx, cy, x, y)
        label = _plain(f"{index + 1} {report.catalogue.field(index + 1).name.in_language(lang)}")
        lx, ly = _radar_point(index, 112, cx=cx, cy=cy)
        width = pdf.get_string_width(label)
        if abs(lx - cx) < 3:
            lx -= width / 2
        elif lx < cx:
            lx -= width
        lx = min(max(lx, pdf.l_margin), pdf.w - pdf.r_margin - width)
        pdf.text(lx, ly + 1.2, label)
    if any(value is not None for value in median):
        pdf.set_draw_color(*GREY)
        pdf.set_line_width(0.5)
        pdf.set_dash_pattern(dash=1.6, gap=1.0)
        pdf.polygon([_radar_point(i, v or 0, cx=cx, cy=cy) for i, v in enumerate(median)])
        pdf.set_dash_pattern()
    if any(value is not None for value in own):
        points = [_radar_point(i, v or 0, cx=cx, cy=cy) for i, v in enumerate(own)]
        pdf.set_draw_color(*BLUE)
        pdf.set_fill_color(*BLUE)
        pdf.set_line_width(0.7)
        with pdf.local_context(fill_opacity=0.25):
            pdf.polygon(points, style="DF")
        for index, value in enumerate(own):
            if value is not None:
                x, y = points[index]
                pdf.circle(x, y, 0.9, style="F")
    pdf.set_line_width(0.2)
    pdf.set_y(cy + RADIUS_MM + 8)
    pdf.set_font(FONT, size=8)
    pdf.set_text_color(*GREY)
    pdf.multi_cell(0, 4, _plain(caption), align="C", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_text_color(*DARK)


def render_report_pdf(report: Report, *, language: str = "de") -> bytes:
    lang = "en" if language == "en" else "de"
    t = LABELS[lang]
    catalogue, result = report.catalogue, report.result
    name = report.municipality.name if report.municipality else report.ags
    pdf = _ReportPdf(footer_text=_plain(f"{t['title']}: {name} (AGS {report.ags})"))
    pdf.set_title(_plain(f"{t['title']}: {name}"))
    pdf.set_lang(lang)
    pdf.set_margins(15, 15, 15)
    pdf.set_auto_page_break(True, margin=16)
    pdf.add_page()

    pdf.heading(f"{t['title']}: {name}", size=17)
    meta = f"AGS {report.ags}"
    if result:
        meta += f" · {t['self_check']} {result.self_check.id}"
        if result.self_check.submitted_at:
            meta += f" · {t['submitted']} {result.self_check.submitted_at.date().isoformat()}"
        meta += f" · {t['catalogue']} {result.catalogue.version}"
    pdf.paragraph(meta, color=GREY)
    if result is None:
        pdf.paragraph(t["no_self_check"])
    else:
        assessment = result.assessment
        overall = (
            f"{t['overall']}: {_number(assessment.overall)} "
            f"({catalogue.band_label(assessment.overall_level).in_language(lang)})"
        )
        if assessment.strengths:
            strengths = ", ".join(
                catalogue.field(n).name.in_language(lang) for n in assessment.strengths
            )
            overall += f" · {t['strengths']}: {strengths}"
        pdf.set_font(FONT, "B", 11.5)
        pdf.multi_cell(0, 6, _plain(overall), new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    _draw_radar(pdf, report, lang=lang, caption=t["radar"])

    benchmark = {b.field: b for b in report.benchmark}
    progress = {p.field: p for p in (result.progress or ())} if result else {}
    rows = []
    for field in catalogue.fields:
        a = result.assessment.field(field.number) if result else None
        b = benchmark[field.number]
        p = progress.get(field.number)
        rows.append(
            [
                f"{field.number} {field.name.in_language(lang)}",
                _number(a.score) if a else "–",
                catalogue.band_label(a.level).in_language(lang) if a else "–",
                f"{a.answered} / {a.questions}" if a else "–",
                f"{b.rank} / {b.participants}" if b.rank else "–",
                t[b.band.value] if b.band else "–",
                f"{b.q1:.1f} / {b.median:.1f} / {b.q3:.1f}"
                if b.median is not None and b.q1 is not None and b.q3 is not None
                else "–",
                _number(p.change, "%+.1f") if p else "–",
            ]
        )
    pdf.grid(
        [
            t["field"],
            t["score"],
            t["level"],
            t["coverage"],
            t["rank"],
            t["band"],
            t["quartiles"],
            t["change"],
        ],
        rows,
        widths=(42, 12, 23, 19, 11, 28, 26, 19),
    )

    pdf.heading(t["perspectives"])
    shown = [f for f in report.perspectives.fields if f.participants]
    if not shown:
        pdf.paragraph(t["no_perspectives"])
    else:
        rows = []
        for f in shown:
            for position, g in enumerate(f.groups):
                field_name = f"{f.field} {catalogue.field(f.field).name.in_language(lang)}"
                mean = t["too_few"] if g.mean is None else _number(g.mean)
                if g.mean is not None and g.counted < g.participants:
                    mean += "*"
                rows.append(
                    [
                        field_name if position == 0 else "",
                        g.group.value.replace("_", " "),
                        str(g.participants),
                        mean,
                        _number(g.gap, "%+.1f") if g.mean is not None else "",
                    ]
                )
        pdf.grid(
            [t["field"], t["group"], t["participants"], t["mean"], t["gap"]],
            rows,
            widths=(60, 42, 24, 28, 26),
        )
        pdf.paragraph(t["min_group"] % report.perspectives.min_group_size, color=GREY, size=8.5)

    pdf.heading(t["deficits"])
    if result and result.assessment.deficits:
        texts = {q.id: q.text for f in catalogue.fields for q in f.questions}
        for number in result.assessment.deficits:
            a = result.assessment.field(number)
            pdf.set_text_color(*RED)
            pdf.set_font(FONT, "B", 10.5)
            pdf.multi_cell(
                0,
                5.5,
                _plain(
                    f"{number} {catalogue.field(number).name.in_language(lang)}: "
                    f"{_number(a.score)} ({catalogue.band_label(a.level).in_language(lang)})"
                ),
                new_x=XPos.LMARGIN,
                new_y=YPos.NEXT,
            )
            pdf.paragraph(a.suggestion.in_language(lang))
            if a.open_points:
                pdf.paragraph(f"{t['open_points']}:")
                for question in a.open_points:
                    pdf.paragraph(f"- {texts[question].in_language(lang)}")
            pdf.ln(2)
    elif result:
        pdf.paragraph(t["no_deficits"])

    pdf.heading(t["measures"])
    if not report.measures:
        pdf.paragraph(t["no_measures"])
    else:
        rows = [
            [
                f"{m.field} {catalogue.field(m.field).name.in_language(lang)}",
                m.title,
                m.owner_role,
                t[m.status.value],
                f"{m.starts_on.isoformat() if m.starts_on else ''} – "
                f"{m.due_on.isoformat() if m.due_on else ''}",
            ]
            for m in sorted(report.measures, key=lambda m: m.field)
        ]
        pdf.grid(
            [t["field"], t["title_col"], t["owner"], t["status"], t["dates"]],
            rows,
            widths=(45, 52, 32, 20, 31),
        )
    return bytes(pdf.output())
