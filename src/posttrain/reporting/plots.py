"""Inline SVG charts for the report pages: no JavaScript, no network, readable in the KFP UI's HTML viewer."""
from __future__ import annotations

import math
from html import escape

PALETTE = ("#4477aa", "#ee6677", "#228833", "#ccbb44", "#66ccee", "#aa3377", "#bbbbbb")
FONT = 'font-family="system-ui,sans-serif"'


def _ticks(low: float, high: float, count: int = 4) -> list[float]:
    """About `count` round tick values covering [low, high]."""
    if high <= low:
        return [low]
    raw = (high - low) / count
    step = 10 ** math.floor(math.log10(raw))
    step *= next(m for m in (1, 2, 2.5, 5, 10) if m * step >= raw)
    first = math.ceil(low / step - 1e-9) * step
    return [first + i * step for i in range(int((high - first) / step + 1e-9) + 1)]


def _spread(wanted: dict[str, float], gap: float, low: float, high: float) -> dict[str, float]:
    """Label positions near `wanted` (y per label) but at least `gap` apart, so equal scores stay readable."""
    placed: dict[str, float] = {}
    for name, y in sorted(wanted.items(), key=lambda item: item[1]):
        placed[name] = max(y, max(placed.values(), default=low - gap) + gap)
    overflow = max(0.0, max(placed.values(), default=high) - high - 10)
    return {name: y - overflow for name, y in placed.items()}


def progression(title: str, models: list[str], series: dict[str, list[tuple[float, float, float]]]) -> str:
    """Scores across stages: one line per benchmark over `models` (x), each point with its 95% interval drawn
    as a whisker (`series`: benchmark -> [(score, low, high)] in model order). Scores are shares in [0, 1]."""
    width, height, left, right, top, bottom = 900, 300, 48, 170, 34, 34
    plot_w, plot_h = width - left - right, height - top - bottom
    x = {m: left + (i + 0.5) * plot_w / len(models) for i, m in enumerate(models)}
    hi = min(1.0, max((h for points in series.values() for _, _, h in points), default=1.0) * 1.1 + 0.02)
    hi = max(hi, 0.1)

    def y(value: float) -> float:
        return top + plot_h * (1 - value / hi)

    parts = [f'<svg class="progression" role="img" aria-label="{escape(title)}" viewBox="0 0 {width} {height}" '
             f'width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg" {FONT}>',
             f'<title>{escape(title)}</title>',
             f'<text x="0" y="16" font-size="14" font-weight="600">{escape(title)}</text>']
    for tick in _ticks(0, hi):
        parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" stroke="#eee"/>'
                     f'<text x="{left - 6}" y="{y(tick) + 4:.1f}" font-size="11" text-anchor="end" fill="#555">'
                     f'{tick:.0%}</text>')
    for model in models:
        parts.append(f'<text x="{x[model]:.1f}" y="{height - 12}" font-size="12" text-anchor="middle">'
                     f'{escape(model)}</text>')
    labels = _spread({name: y(points[-1][0]) for name, points in series.items()}, 15, top, top + plot_h)
    for i, (name, points) in enumerate(series.items()):
        color = PALETTE[i % len(PALETTE)]
        offset = (i - (len(series) - 1) / 2) * 6  # side by side, so whiskers of one stage do not hide each other
        coords = [(x[m] + offset, p) for m, p in zip(models, points)]
        path = " ".join(f"{cx:.1f},{y(score):.1f}" for cx, (score, _, _) in coords)
        parts.append(f'<polyline class="series" fill="none" stroke="{color}" stroke-width="2" points="{path}"/>')
        for (cx, (score, low, high)), model in zip(coords, models):
            parts.append(f'<g class="interval"><title>{escape(name)}, {escape(model)}: {score:.1%} '
                         f'(95% interval {low:.1%} to {high:.1%})</title>'
                         f'<line x1="{cx:.1f}" x2="{cx:.1f}" y1="{y(high):.1f}" y2="{y(low):.1f}" stroke="{color}" '
                         f'stroke-width="1.5"/><line x1="{cx - 4:.1f}" x2="{cx + 4:.1f}" y1="{y(high):.1f}" '
                         f'y2="{y(high):.1f}" stroke="{color}"/><line x1="{cx - 4:.1f}" x2="{cx + 4:.1f}" '
                         f'y1="{y(low):.1f}" y2="{y(low):.1f}" stroke="{color}"/>'
                         f'<circle cx="{cx:.1f}" cy="{y(score):.1f}" r="3.5" fill="{color}"/></g>')
        last = coords[-1][1][0]
        parts.append(f'<text x="{left + plot_w + 8}" y="{labels[name] + 4:.1f}" font-size="12" fill="{color}">'
                     f'{escape(name)} {last:.1%}</text>')
    parts.append("</svg>")
    return "".join(parts)


def curve(title: str, points: list[tuple[float, float]], color: str = PALETTE[0]) -> str:
    """A small line chart of (step, value), its value range and step range on the axes."""
    width, height, left, top, bottom = 335, 160, 50, 24, 22
    plot_w, plot_h = width - left - 8, height - top - bottom
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y0, y1 = min(ys), max(ys)
    if y1 - y0 < 1e-12 * max(1.0, abs(y1)):
        y0, y1 = y0 - 0.5 * abs(y0 or 1), y1 + 0.5 * abs(y1 or 1)
    scaled = [(left + (px - x0) / (x1 - x0) * plot_w, top + (1 - (py - y0) / (y1 - y0)) * plot_h) for px, py in points]
    path = " ".join(f"{px:.1f},{py:.1f}" for px, py in scaled)
    dots = "".join(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="2" fill="{color}"/>' for px, py in scaled) \
        if len(points) <= 12 else ""
    return (f'<svg class="curve" role="img" aria-label="{escape(title)}" viewBox="0 0 {width} {height}" '
            f'width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg" {FONT}>'
            f'<title>{escape(title)}</title><text x="0" y="14" font-size="12" font-weight="600">{escape(title)}</text>'
            f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#ddd"/>'
            f'<polyline class="series" fill="none" stroke="{color}" stroke-width="1.8" points="{path}"/>{dots}'
            f'<text x="{left - 4}" y="{top + 9}" font-size="10" text-anchor="end" fill="#555">{y1:.3g}</text>'
            f'<text x="{left - 4}" y="{top + plot_h}" font-size="10" text-anchor="end" fill="#555">{y0:.3g}</text>'
            f'<text x="{left}" y="{height - 6}" font-size="10" fill="#555">step {x0:g}</text>'
            f'<text x="{width - 8}" y="{height - 6}" font-size="10" text-anchor="end" fill="#555">step {x1:g}</text>'
            f'</svg>')
