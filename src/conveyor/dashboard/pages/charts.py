"""Charts of the last hour as inline SVG, drawn on the server: no chart library, no script,
and they refresh with the rest of the live region."""

from __future__ import annotations

import time
from collections.abc import Sequence

from ...stats import ActivityBucket
from .html import esc

W, H = 640, 170  # the drawing's own units; CSS scales it to the box
LEFT, RIGHT, TOP, BOTTOM = 40, 8, 10, 22

COLORS = {"succeeded": "#3fa66a", "retried": "#f0b429", "failed": "#d9534f",
          "dead": "#5a2a82", "rate": "#d9534f"}


def _frame(count: int, top: float, label: str, minutes: Sequence[ActivityBucket]) -> list[str]:
    """Axes, grid lines at 0, half and the top, and time labels every 15 minutes."""
    plot_w, plot_h = W - LEFT - RIGHT, H - TOP - BOTTOM
    out = [f"<svg viewBox='0 0 {W} {H}' role='img' aria-label='{esc(label)}' "
           "font-size='10' font-family='sans-serif'>"]
    for frac in (0.0, 0.5, 1.0) if top >= 2 else (0.0, 1.0):  # no half tasks on the axis
        y = TOP + plot_h * (1 - frac)
        value = top * frac
        text = f"{value:.0f}%" if label.endswith("rate") else _short(value)
        out.append(f"<line x1='{LEFT}' x2='{W - RIGHT}' y1='{y:.1f}' y2='{y:.1f}' "
                   f"stroke='#e6e8ed'/><text x='{LEFT - 4}' y='{y + 3:.1f}' "
                   f"text-anchor='end' fill='#7a8294'>{esc(text)}</text>")
    step = plot_w / max(count, 1)
    for i, m in enumerate(minutes):
        if i % 15 == 0 or i == count - 1:
            x = LEFT + step * (i + 0.5)
            anchor = "end" if i == count - 1 else "middle"
            out.append(f"<text x='{x:.1f}' y='{H - 6}' text-anchor='{anchor}' "
                       f"fill='#7a8294'>{esc(time.strftime('%H:%M', time.localtime(m.start)))}"
                       "</text>")
    return out


def _short(value: float) -> str:
    if value >= 10_000:
        return f"{value / 1000:.0f}k"
    if value >= 1000:
        return f"{value / 1000:.1f}k"
    return f"{value:.0f}" if value == int(value) else f"{value:.1f}"


def _nice(value: float) -> float:
    """A round top for the y axis, at least `value`."""
    for top in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 20_000, 50_000):
        if value <= top:
            return float(top)
    return float(value)


def throughput(minutes: Sequence[ActivityBucket]) -> str:
    """Settled attempts per minute, stacked: succeeded, retried, failed (raised with no retry
    left) and dead (dead-lettered without raising: rejected, undecodable, unknown)."""
    n = len(minutes)
    top = _nice(max((m.succeeded + m.retried + m.failed + m.dead for m in minutes), default=0))
    out = _frame(n, top, "throughput", minutes)
    plot_w, plot_h = W - LEFT - RIGHT, H - TOP - BOTTOM
    step = plot_w / max(n, 1)
    bar = max(step - 1.5, 1.0)
    for i, m in enumerate(minutes):
        x = LEFT + step * i + (step - bar) / 2
        y: float = TOP + plot_h
        tip = (f"{time.strftime('%H:%M', time.localtime(m.start))}: {m.succeeded} succeeded, "
               f"{m.retried} retried, {m.failed} failed, {m.dead} dead")
        out.append(f"<g><title>{esc(tip)}</title>")
        out.append(f"<rect x='{x:.1f}' y='{TOP}' width='{bar:.1f}' height='{plot_h}' "
                   "fill='transparent'/>")
        for key, value in (("succeeded", m.succeeded), ("retried", m.retried),
                           ("failed", m.failed), ("dead", m.dead)):
            if value <= 0:
                continue
            h = plot_h * value / top
            y -= h
            out.append(f"<rect x='{x:.1f}' y='{y:.1f}' width='{bar:.1f}' height='{h:.1f}' "
                       f"fill='{COLORS[key]}'/>")
        out.append("</g>")
    out.append("</svg>")
    return "".join(out)


def failure_rate(minutes: Sequence[ActivityBucket]) -> str:
    """The share of tasks settled in each minute that ended badly (failed or dead), in
    percent; retries are not failures yet. Minutes where nothing settled leave a gap rather
    than pretending to be 0%."""
    rates: list[float | None] = []
    for m in minutes:
        bad = m.failed + m.dead
        done = m.succeeded + bad
        rates.append(None if done == 0 else 100.0 * bad / done)
    top = _nice(max((r for r in rates if r is not None), default=0.0))
    top = min(max(top, 10.0), 100.0)
    out = _frame(len(minutes), top, "failure rate", minutes)
    plot_w, plot_h = W - LEFT - RIGHT, H - TOP - BOTTOM
    step = plot_w / max(len(minutes), 1)
    segment: list[str] = []
    segments: list[list[str]] = []
    for i, r in enumerate(rates):
        if r is None:
            if segment:
                segments.append(segment)
            segment = []
            continue
        x = LEFT + step * (i + 0.5)
        y = TOP + plot_h * (1 - r / top)
        segment.append(f"{x:.1f},{y:.1f}")
        tip = f"{time.strftime('%H:%M', time.localtime(minutes[i].start))}: {r:.0f}% failed"
        out.append(f"<circle cx='{x:.1f}' cy='{y:.1f}' r='2.2' fill='{COLORS['rate']}'>"
                   f"<title>{esc(tip)}</title></circle>")
    if segment:
        segments.append(segment)
    for seg in segments:
        if len(seg) > 1:
            out.append(f"<polyline points='{' '.join(seg)}' fill='none' "
                       f"stroke='{COLORS['rate']}' stroke-width='1.5'/>")
    out.append("</svg>")
    return "".join(out)


def legend(*keys: str) -> str:
    return "<div class='legend'>" + "".join(
        f"<i style='background:{COLORS[k]}'></i>{esc(k)}" for k in keys) + "</div>"
