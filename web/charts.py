"""Server-side SVG charts: one metric over a window, with the patient's thresholds drawn
as bands. Pure (no I/O), so a chart is tested from its inputs; the page needs no
JavaScript to show it. Every text is escaped; colours follow the queue's (red, amber)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from html import escape

WIDTH, HEIGHT = 720, 220
LEFT, RIGHT, TOP, BOTTOM = 56, 12, 12, 28
COLOURS = {"red": "#d5281b", "amber": "#ffb81c", "technical": "#768692"}


@dataclass(frozen=True, slots=True)
class Point:
    at: datetime
    value: float
    low: float | None = None  # a rollup's minimum and maximum, drawn as a range
    high: float | None = None


@dataclass(frozen=True, slots=True)
class Band:
    """Beyond ``limit`` (above it for ``high``, below it for ``low``) raises ``priority``."""

    direction: str
    limit: float
    priority: str
    label: str


def _fmt(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def y_range(
    points: list[Point], bands: list[Band], possible: tuple[float, float]
) -> tuple[float, float]:
    values = [p.value for p in points]
    values += [v for p in points for v in (p.low, p.high) if v is not None]
    values += [b.limit for b in bands]
    if not values:
        return possible
    low, high = min(values), max(values)
    pad = max((high - low) * 0.1, 1.0)
    return max(possible[0], low - pad), min(possible[1], high + pad)


def chart(
    *,
    title: str,
    unit: str,
    points: list[Point],
    bands: list[Band],
    since: datetime,
    until: datetime,
    possible: tuple[float, float],
) -> str:
    """The SVG markup of one metric's chart (a ``role="img"`` with a text alternative)."""
    y0, y1 = y_range(points, bands, possible)
    span = (until - since).total_seconds() or 1.0
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(at: datetime) -> float:
        return LEFT + plot_w * (at - since).total_seconds() / span

    def y(value: float) -> float:
        return TOP + plot_h * (1 - (value - y0) / ((y1 - y0) or 1.0))

    summary = (
        f"{title}: {len(points)} readings, from {_fmt(min(p.value for p in points))} to "
        f"{_fmt(max(p.value for p in points))} {unit}"
        if points
        else f"{title}: no readings in this period"
    )
    parts = [
        f'<svg class="hw-chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(summary)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(summary)}</title>",
        f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="#ffffff" '
        'stroke="#aeb7bd"/>',
    ]
    for band in sorted(bands, key=lambda b: b.priority == "red"):
        edge = min(max(band.limit, y0), y1)
        top, bottom = (y(y1), y(edge)) if band.direction == "high" else (y(edge), y(y0))
        colour = COLOURS.get(band.priority, "#768692")
        parts.append(
            f'<rect x="{LEFT}" y="{top:.1f}" width="{plot_w}" height="{max(bottom - top, 0):.1f}" '
            f'fill="{colour}" fill-opacity="0.18"/>'
        )
        parts.append(
            f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{y(edge):.1f}" y2="{y(edge):.1f}" '
            f'stroke="{colour}" stroke-dasharray="4 3"/>'
        )
        parts.append(
            f'<text x="{LEFT + plot_w - 4}" y="{y(edge) - 3:.1f}" text-anchor="end" '
            f'font-size="11" fill="#212b32">{escape(band.label)}</text>'
        )
    for value in (y0, (y0 + y1) / 2, y1):
        parts.append(
            f'<text x="{LEFT - 6}" y="{y(value) + 4:.1f}" text-anchor="end" font-size="11" '
            f'fill="#4c6272">{_fmt(value)}</text>'
        )
    ticks = 7
    for i in range(ticks + 1):
        at = since + timedelta(seconds=span * i / ticks)
        parts.append(
            f'<text x="{x(at):.1f}" y="{HEIGHT - 8}" text-anchor="middle" font-size="11" '
            f'fill="#4c6272">{at.strftime("%d %b")}</text>'
        )
    for p in points:
        if p.low is None or p.high is None:
            continue
        parts.append(
            f'<line x1="{x(p.at):.1f}" x2="{x(p.at):.1f}" y1="{y(p.low):.1f}" '
            f'y2="{y(p.high):.1f}" stroke="#005eb8" stroke-opacity="0.35" stroke-width="3"/>'
        )
    if len(points) > 1:
        path = " ".join(f"{x(p.at):.1f},{y(p.value):.1f}" for p in points)
        parts.append(f'<polyline points="{path}" fill="none" stroke="#005eb8" stroke-width="2"/>')
    for p in points[-400:]:
        parts.append(f'<circle cx="{x(p.at):.1f}" cy="{y(p.value):.1f}" r="2.5" fill="#005eb8"/>')
    parts.append("</svg>")
    return "".join(parts)
