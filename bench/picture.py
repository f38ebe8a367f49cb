"""Draw a measured rollout as an SVG timeline: machines being updated per wave, over time.

The data is the rollout's ``in_flight`` series (``bench/rollout.py``: machine steps in flight per
wave, sampled from the product's step reports), with the bound and the wall time marked, so one
look shows whether the waves kept their concurrency full and where time went between them.
Plain SVG text, no plotting library: a benchmark must not need one to run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any

__all__ = ["in_flight", "write_timeline"]

_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")
_W, _H, _L, _R, _T, _B = 900, 340, 60, 20, 50, 50


def in_flight(spans: Sequence[tuple[float, float, int]], points: int = 300) -> dict[str, Any]:
    """Return machine steps in flight per wave at ``points`` times over the rollout.

    ``spans`` are (start_s, end_s, wave) from the rollout's start.
    """
    if not spans:
        return {"t": [], "waves": {}}
    end = max(e for _, e, _ in spans)
    step = end / max(1, points - 1)
    times = [round(i * step, 3) for i in range(points)]
    waves: dict[str, list[int]] = {}
    for wave in sorted({w for _, _, w in spans}):
        # +1 at a start, -1 at an end, summed over the sample grid.
        delta = [0] * (points + 1)
        for s, e, w in spans:
            if w != wave:
                continue
            a = min(points, max(0, int(s / step + 0.999999))) if step else 0
            b = min(points, max(0, int(e / step + 0.999999))) if step else 0
            delta[a] += 1
            delta[b] -= 1
        series, running = [], 0
        for i in range(points):
            running += delta[i]
            series.append(running)
        waves[str(wave)] = series
    return {"t": times, "waves": waves}


def _svg(out: Mapping[str, Any]) -> str:
    data = out.get("in_flight") or {"t": [], "waves": {}}
    times: list[float] = list(data.get("t") or [])
    waves: dict[str, list[int]] = dict(data.get("waves") or {})
    wall = float(out.get("wall_s") or (times[-1] if times else 1.0))
    bound = float(out.get("bound_s") or 0.0)
    x_max = max(wall, bound, times[-1] if times else 0.0, 1e-9)
    y_max = max([1, *(max(v, default=0) for v in waves.values())])
    pw, ph = _W - _L - _R, _H - _T - _B

    def x(t: float) -> float:
        return _L + pw * t / x_max

    def y(n: float) -> float:
        return _T + ph * (1 - n / y_max)

    title = (
        f"{out.get('machines')} machines, {out.get('regions')} regions, profile "
        f"{out.get('profile')} x{out.get('time_factor')}: wall {wall:.1f} s, bound "
        f"{bound:.1f} s, ratio {out.get('ratio_to_bound')}"
    )
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}" '
        f'font-family="sans-serif" font-size="12">',
        f'<rect width="{_W}" height="{_H}" fill="white"/>',
        f'<text x="{_L}" y="20" font-size="14">{escape(title)}</text>',
        f'<text x="{_L}" y="38" fill="#555">machine steps in flight per wave (y) over seconds '
        "since the rollout began (x)</text>",
        f'<line x1="{_L}" y1="{_T + ph}" x2="{_L + pw}" y2="{_T + ph}" stroke="black"/>',
        f'<line x1="{_L}" y1="{_T}" x2="{_L}" y2="{_T + ph}" stroke="black"/>',
    ]
    for i in range(6):
        t = x_max * i / 5
        parts.append(f'<text x="{x(t):.1f}" y="{_T + ph + 16}" text-anchor="middle">{t:.0f}</text>')
        n = y_max * i / 5
        parts.append(f'<text x="{_L - 6}" y="{y(n) + 4:.1f}" text-anchor="end">{n:.0f}</text>')
    for label, at, colour in (("bound", bound, "#888"), ("wall", wall, "#000")):
        if at > 0:
            parts.append(
                f'<line x1="{x(at):.1f}" y1="{_T}" x2="{x(at):.1f}" y2="{_T + ph}" '
                f'stroke="{colour}" stroke-dasharray="4 3"/>'
                f'<text x="{x(at) - 4:.1f}" y="{_T + 12}" text-anchor="end" '
                f'fill="{colour}">{label}</text>'
            )
    for i, (wave, series) in enumerate(sorted(waves.items(), key=lambda kv: int(kv[0]))):
        colour = _COLOURS[i % len(_COLOURS)]
        points = " ".join(f"{x(t):.1f},{y(n):.1f}" for t, n in zip(times, series, strict=False))
        parts.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{points}"/>'
        )
        parts.append(
            f'<text x="{_L + pw - 4}" y="{_T + 14 * (i + 2)}" text-anchor="end" '
            f'fill="{colour}">wave {escape(wave)}</text>'
        )
    parts.append(
        f'<text x="{_L + pw / 2}" y="{_H - 10}" text-anchor="middle" fill="#555">seconds</text>'
    )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def write_timeline(path: Path, out: Mapping[str, Any]) -> Path:
    """Write the SVG timeline of one measured rollout (its JSON object) to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(_svg(out))
    return path
