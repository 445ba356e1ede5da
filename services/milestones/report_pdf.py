"""The progress report as a PDF (reportlab): the content :func:`report.build` makes, laid out for a reader.

A header with the weeks covered, the milestones reached in them, then one
chart a metric, each with the days logged each week beside it (a week
without logging is drawn as a gap, never as a zero bar), and the fixed note
on what the figures are. Fonts are the Bitstream Vera faces that reportlab
ships: nothing is fetched, and the same content gives the same text on
every machine.

The charts are drawn here rather than by the celebration email's chart
(the notify service's): that one draws two periods of one milestone and by
design refuses anything but an improvement, while a report's chart is a
weekly series that must show a worse week like any other. The palette is
the email's, so the two read as one product.
"""

from __future__ import annotations

import io
from datetime import date

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
WHOSE = {"yours": "your own", "together": "the two of you", "partner": "your partner's"}

# The celebration email's palette (RGB 0-255).
INK = (94, 58, 38)
SOFT_INK = (161, 110, 82)
RULE = (236, 218, 200)
BAR = (226, 122, 90)
COVERAGE = (246, 201, 168)

WIDTH = 515  # the frame's width on A4 with 40pt margins


def _day(d: date, year: bool = False) -> str:
    return f"{_MONTHS[d.month - 1]} {d.day}" + (f", {d.year}" if year else "")


def _as_date(value) -> date:
    return value if isinstance(value, date) else date.fromisoformat(value)


def _fonts() -> tuple[str, str]:
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont

    if "Vera" not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(TTFont("Vera", "Vera.ttf"))  # found in reportlab's own fonts folder
        pdfmetrics.registerFont(TTFont("Vera-Bold", "VeraBd.ttf"))
    return "Vera", "Vera-Bold"


def _colour(rgb):
    from reportlab.lib.colors import Color

    return Color(*(c / 255 for c in rgb))


def _figure(value: float) -> str:
    return f"{value:g}" if value == int(value) else f"{value:.1f}"


def chart_drawing(chart: dict, regular: str, bold: str, days: int):
    """One metric's weekly bars, the days logged each week beneath them and a summary beside them
    (``days``: how many of the weeks' days have begun, the current week being under way)."""
    from reportlab.graphics.shapes import Drawing, Line, Rect, String

    points = chart["points"]
    n = len(points)
    height = 96
    d = Drawing(WIDTH, height)
    ink, soft, rule, bar, cover = map(_colour, (INK, SOFT_INK, RULE, BAR, COVERAGE))

    def text(x, y, words, size, colour=soft, anchor="start", font=regular):
        d.add(
            String(x, y, words, fontName=font, fontSize=size, fillColor=colour, textAnchor=anchor)
        )

    text(0, height - 10, chart["title"], 9, ink, font=bold)
    text(4 + _width(chart["title"], bold, 9), height - 10, f"({chart['unit']})", 8)
    x0, x1, y0, y1 = 34, WIDTH - 118, 30, height - 20
    step = (x1 - x0) / n
    values = [p["value"] for p in points if p["value"] is not None]
    top = max(values, default=0) or 1
    if "out of" in chart["unit"]:  # a rating: drawn on its whole scale
        top = 10 if "10" in chart["unit"] else 5
    d.add(Line(x0, y0, x1, y0, strokeColor=rule, strokeWidth=1))
    d.add(Line(x0, y1, x1, y1, strokeColor=rule, strokeWidth=0.5, strokeDashArray=[2, 2]))
    text(x0 - 4, y1 - 3, _figure(top), 6.5, anchor="end")
    text(x0 - 4, y0 - 2, "0", 6.5, anchor="end")
    text(x0 - 4, 14, "days", 6, anchor="end")
    w = max(1.5, step * 0.7)
    for i, p in enumerate(points):
        cx = x0 + step * (i + 0.5)
        if (
            p["value"] is None
        ):  # nothing logged, or nothing of this metric: a gap, marked on the baseline
            d.add(
                Line(cx - w / 2, y0 + 1.5, cx + w / 2, y0 + 1.5, strokeColor=rule, strokeWidth=1.5)
            )
            if n <= 16:
                text(
                    cx,
                    y0 + 5,
                    "not logged" if p["logged_days"] == 0 else "\u2013",
                    5,
                    anchor="middle",
                )
        else:
            h = (y1 - y0) * min(p["value"], top) / top
            d.add(Rect(cx - w / 2, y0, w, max(h, 0.8), fillColor=bar, strokeColor=None))
            if n <= 16:
                text(cx, y0 + h + 2, _figure(p["value"]), 6, ink, "middle")
        # the days logged that week: a small bar out of 7, and the number when there is room
        logged_height = 9 * p["logged_days"] / 7 or 0.5
        d.add(Rect(cx - w / 2, 12, w, logged_height, fillColor=cover, strokeColor=None))
        if n <= 26:
            text(cx, 23, str(p["logged_days"]), 5.5, anchor="middle")
    first, last = _as_date(points[0]["start"]), _as_date(points[-1]["start"])
    text(x0, 2, f"week of {_day(first)}", 6.5)
    text(x1, 2, f"week of {_day(last)}", 6.5, anchor="end")
    logged = sum(p["logged_days"] for p in points)
    silent = sum(1 for p in points if p["logged_days"] == 0)
    text(x1 + 12, y1 - 10, f"Logged on {logged} of {days} days", 7.5, ink)
    gaps = (
        f"{silent} week{'s' * (silent != 1)} with nothing logged" if silent else "Every week logged"
    )
    text(x1 + 12, y1 - 21, gaps, 7.5, ink)
    return d


def _width(text: str, font: str, size: float) -> float:
    from reportlab.pdfbase.pdfmetrics import stringWidth

    return stringWidth(text, font, size)


def render(report: dict) -> bytes:
    """The PDF of ``report`` (the content :func:`report.build` makes, or its JSON)."""
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.platypus import KeepTogether, Paragraph, SimpleDocTemplate, Spacer

    regular, bold = _fonts()
    ink, soft = _colour(INK), _colour(SOFT_INK)
    h1 = ParagraphStyle("h1", fontName=bold, fontSize=16, leading=20, textColor=ink)
    h2 = ParagraphStyle(
        "h2", fontName=bold, fontSize=11.5, leading=15, textColor=ink, spaceBefore=10, spaceAfter=4
    )
    body = ParagraphStyle("body", fontName=regular, fontSize=8.5, leading=11.5, textColor=ink)
    small = ParagraphStyle("small", parent=body, fontSize=8, leading=10.5, textColor=soft)

    first, last = _as_date(report["first_day"]), _as_date(report["last_day"])
    days = min((last - first).days, (_as_date(report["today"]) - first).days) + 1
    story = [
        Paragraph("Tandem progress report", h1),
        Spacer(1, 4),
        Paragraph(
            f"{report['weeks']} weeks, {_day(first, True)} to {_day(last, True)}, in local dates "
            f"({_escape(report['timezone'])}); prepared {_day(_as_date(report['today']), True)}.",
            small,
        ),
    ]
    if report["milestones"]:
        story.append(Paragraph("Milestones reached", h2))
        for m in report["milestones"]:
            level = f", level {m['level']}" if m["level"] > 1 else ""
            story.append(
                Paragraph(
                    f"<b>{_day(_as_date(m['reached_on']), True)}: {_escape(m['name'])}</b> "
                    f"({WHOSE[m['whose']]}{level}). {_escape(m['evidence'])}",
                    body,
                )
            )
    if not report["sections"]:
        story.append(Paragraph("Nothing was logged in these weeks.", body))
    for section in report["sections"]:
        story.append(Paragraph(_escape(section["title"]), h2))
        for chart in section["charts"]:
            drawing = chart_drawing(chart, regular, bold, days)
            story.append(KeepTogether([drawing, Spacer(1, 6)]))
    story.append(Paragraph("About these figures", h2))
    story.extend(Paragraph(_escape(line), small) for line in report["about"])

    out = io.BytesIO()
    doc = SimpleDocTemplate(
        out,
        pagesize=A4,
        leftMargin=40,
        rightMargin=40,
        topMargin=40,
        bottomMargin=40,
        title="Tandem progress report",
        author="Tandem",
        invariant=1,  # the same content gives the same bytes
    )
    doc.build(story)
    return out.getvalue()


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
