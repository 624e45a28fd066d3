"""Inline SVG charts, generated in Python: no JavaScript library and nothing fetched from a CDN.

Every chart is one `<svg class="chart ...">` string with a `<title>` per mark, so a browser's
tooltip shows exact numbers and the file stays readable offline.
"""

from __future__ import annotations

import math
from html import escape
from typing import Sequence

import numpy as np

# Colour per status (and the one used for plain bars); chosen to read on white and in greyscale.
COLORS = {"ok": "#2f7d4f", "filtered": "#d08c1f", "failed": "#b23b3b", "bar": "#3b6ea5",
          "threshold": "#c0392b", "axis": "#555", "grid": "#e4e4e4"}
TALK_COLORS = {"talk": "#3b6ea5", "listen": "#2f7d4f", "both": "#8e5ea2", "silence": "#aaaaaa"}


def fmt(value: float, digits: int = 3) -> str:
    """Short human number: 0.0123, 1.23, 123, 1.2e+06."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 1e5 or magnitude < 1e-3:
        return f"{value:.{digits - 1}e}"
    return f"{value:.{digits}g}" if magnitude < 1000 else f"{value:.0f}"


def _svg(width: int, height: int, body: str, css_class: str, label: str) -> str:
    return (f'<svg class="chart {css_class}" role="img" aria-label="{escape(label)}" width="{width}" '
            f'height="{height}" viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">{body}</svg>')


def histogram(kept: Sequence[float], rejected: Sequence[float], title: str,
              thresholds: Sequence[tuple[float, str]] = (), bins: int = 24,
              width: int = 320, height: int = 170) -> str:
    """Stacked histogram of kept (green) and rejected (orange) values with threshold lines.

    Args:
        kept: values of kept rows; NaN and inf are counted as "n/a" below the axis.
        rejected: values of rejected rows.
        thresholds: (position, label) pairs; drawn in red. One far outside the data is shown as an
            arrow at the edge with its value, so a loose bound never squashes the histogram.
    """
    kept_a = np.asarray(kept, dtype=float)
    rej_a = np.asarray(rejected, dtype=float)
    finite_k, finite_r = kept_a[np.isfinite(kept_a)], rej_a[np.isfinite(rej_a)]
    missing = int(len(kept_a) - len(finite_k) + len(rej_a) - len(finite_r))
    both = np.concatenate([finite_k, finite_r])
    left, right, top, bottom = 40, 10, 22, 34
    plot_w, plot_h = width - left - right, height - top - bottom
    parts = [f'<text x="{left}" y="14" class="ct">{escape(title)}</text>']
    if not len(both):
        parts.append(f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" class="cn">no values'
                     f'{f" ({missing} n/a)" if missing else ""}</text>')
        return _svg(width, height, "".join(parts), "histogram", title)
    lo, hi = float(both.min()), float(both.max())
    span = hi - lo
    inside, outside = [], []
    for position, label in thresholds:
        near = span * 0.5 if span > 0 else max(abs(lo) * 0.5, 1.0)
        (inside if lo - near <= position <= hi + near else outside).append((position, label))
    for position, _ in inside:
        lo, hi = min(lo, position), max(hi, position)
    if hi == lo:
        lo, hi = lo - 0.5, hi + 0.5
    edges = np.linspace(lo, hi, bins + 1)
    count_k, _ = np.histogram(finite_k, edges)
    count_r, _ = np.histogram(finite_r, edges)
    peak = max(int((count_k + count_r).max()), 1)
    x_of = lambda v: left + (v - lo) / (hi - lo) * plot_w  # noqa: E731
    parts.append(f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" '
                 f'stroke="{COLORS["axis"]}"/>')
    parts.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="{COLORS["axis"]}"/>')
    parts.append(f'<text x="{left - 4}" y="{top + 4}" text-anchor="end" class="cl">{peak}</text>')
    parts.append(f'<text x="{left - 4}" y="{top + plot_h}" text-anchor="end" class="cl">0</text>')
    bar_w = plot_w / bins
    for i in range(bins):
        x = left + i * bar_w
        base = top + plot_h
        for count, color, name in ((count_k[i], COLORS["ok"], "kept"), (count_r[i], COLORS["filtered"], "rejected")):
            if count:
                h = count / peak * plot_h
                base -= h
                parts.append(f'<rect class="bar" x="{x + 0.5:.1f}" y="{base:.1f}" width="{max(bar_w - 1, 0.5):.1f}" '
                             f'height="{h:.1f}" fill="{color}"><title>{name} {count} in '
                             f'[{fmt(edges[i])}, {fmt(edges[i + 1])})</title></rect>')
    for value, anchor in ((lo, "start"), (hi, "end")):
        parts.append(f'<text x="{x_of(value):.1f}" y="{top + plot_h + 13}" text-anchor="{anchor}" class="cl">'
                     f'{fmt(value)}</text>')
    label_y = top + 9
    labelled: set[str] = set()  # an |x| bound draws two lines but one label
    for position, label in inside:
        x = x_of(position)
        parts.append(f'<line class="threshold" x1="{x:.1f}" y1="{top - 4}" x2="{x:.1f}" y2="{top + plot_h}" '
                     f'stroke="{COLORS["threshold"]}" stroke-width="1.5" stroke-dasharray="4 2">'
                     f'<title>{escape(label)}</title></line>')
        if label in labelled:
            continue
        labelled.add(label)
        anchor = "end" if x > left + plot_w * 0.6 else "start"
        dx = -3 if anchor == "end" else 3
        parts.append(f'<text x="{x + dx:.1f}" y="{label_y}" text-anchor="{anchor}" class="cth">'
                     f'{escape(label)}</text>')
        label_y += 10
    for position, label in outside:
        if label in labelled:
            continue
        labelled.add(label)
        at_right = position > hi
        x = left + plot_w if at_right else left + 3
        arrow = "\u2192" if at_right else "\u2190"
        anchor = "end" if at_right else "start"
        parts.append(f'<text class="threshold cth" x="{x:.1f}" y="{label_y}" text-anchor="{anchor}">'
                     f'{arrow} {escape(label)}<title>{escape(label)} (outside the data)</title></text>')
        label_y += 10
    note = f"n={len(both)}" + (f", {missing} n/a" if missing else "")
    parts.append(f'<text x="{left + plot_w}" y="{height - 4}" text-anchor="end" class="cl">{note}</text>')
    return _svg(width, height, "".join(parts), "histogram", title)


def hbars(rows: Sequence[tuple[str, float, str]], title: str, value_format=fmt, width: int = 520,
          bar_height: int = 18, label_width: int = 220) -> str:
    """Horizontal bars: (label, value, colour) rows, largest scale wins."""
    top = 22
    height = top + bar_height * max(len(rows), 1) + 8
    plot_w = width - label_width - 70
    peak = max([v for _, v, _ in rows if math.isfinite(v)] + [1e-12])
    parts = [f'<text x="0" y="14" class="ct">{escape(title)}</text>']
    if not rows:
        parts.append(f'<text x="0" y="{top + 14}" class="cn">nothing to show</text>')
    for i, (label, value, color) in enumerate(rows):
        y = top + i * bar_height
        w = (value / peak * plot_w) if math.isfinite(value) and value > 0 else 0
        shown = label if len(label) <= 34 else label[:32] + "\u2026"
        parts.append(f'<text x="{label_width - 6}" y="{y + bar_height * 0.7:.1f}" text-anchor="end" class="cl">'
                     f'{escape(shown)}<title>{escape(label)}</title></text>')
        parts.append(f'<rect class="bar" x="{label_width}" y="{y + 2}" width="{w:.1f}" height="{bar_height - 4}" '
                     f'fill="{color}"><title>{escape(label)}: {value_format(value)}</title></rect>')
        parts.append(f'<text x="{label_width + w + 4:.1f}" y="{y + bar_height * 0.7:.1f}" class="cl">'
                     f'{value_format(value)}</text>')
    return _svg(width, height, "".join(parts), "hbars", title)


def funnel(steps: Sequence[dict], width: int = 560) -> str:
    """Centered bars narrowing from inputs to kept clips, each with its count and hours."""
    bar_h, gap, top = 30, 6, 6
    height = top + len(steps) * (bar_h + gap)
    label_w = 170
    plot_w = width - label_w - 10
    peak_h = max([s["hours"] for s in steps] + [1e-12])
    parts = []
    for i, step in enumerate(steps):
        y = top + i * (bar_h + gap)
        w = max(step["hours"] / peak_h * plot_w, 2)
        x = label_w + (plot_w - w) / 2
        color = COLORS["ok"] if i == len(steps) - 1 else COLORS["bar"]
        parts.append(f'<text x="{label_w - 8}" y="{y + bar_h * 0.65:.1f}" text-anchor="end" class="cl">'
                     f'{escape(step["step"])}</text>')
        parts.append(f'<rect class="bar funnel-step" x="{x:.1f}" y="{y}" width="{w:.1f}" height="{bar_h}" '
                     f'fill="{color}" rx="3"><title>{escape(step["step"])}: {step["count"]} '
                     f'({step["hours"]:.4f} h)</title></rect>')
        parts.append(f'<text x="{label_w + plot_w / 2:.1f}" y="{y + bar_h * 0.65:.1f}" text-anchor="middle" '
                     f'class="cf">{step["count"]} \u00b7 {step["hours"]:.3g} h</text>')
    return _svg(width, height, "".join(parts), "funnel", "funnel from inputs to kept clips")


def stacked_share(parts_in: dict[str, float], title: str, width: int = 560, colors: dict | None = None) -> str:
    """One horizontal bar split into shares (talk/listen/both/silence), with a legend."""
    colors = colors or TALK_COLORS
    total = sum(v for v in parts_in.values() if math.isfinite(v))
    height, top, bar_h = 70, 20, 24
    parts = [f'<text x="0" y="14" class="ct">{escape(title)}</text>']
    x = 0.0
    for name, value in parts_in.items():
        w = value / total * width if total else 0
        parts.append(f'<rect class="bar" x="{x:.1f}" y="{top}" width="{w:.1f}" height="{bar_h}" '
                     f'fill="{colors.get(name, COLORS["bar"])}"><title>{escape(name)}: {value:.1f} s '
                     f'({(value / total if total else 0):.1%})</title></rect>')
        x += w
    lx = 0
    for name, value in parts_in.items():
        share = value / total if total else 0
        parts.append(f'<rect x="{lx}" y="{top + bar_h + 10}" width="10" height="10" '
                     f'fill="{colors.get(name, COLORS["bar"])}"/>')
        parts.append(f'<text x="{lx + 14}" y="{top + bar_h + 19}" class="cl">{escape(name)} {share:.1%}</text>')
        lx += 130
    return _svg(width, height, "".join(parts), "stacked", title)


STYLE = """
svg.chart { font: 11px system-ui, sans-serif; background: #fff; }
svg.chart .ct { font-weight: 600; font-size: 12px; }
svg.chart .cl { fill: #333; font-size: 10px; }
svg.chart .cn { fill: #888; }
svg.chart .cf { fill: #111; font-weight: 600; font-size: 11px; stroke: #fff; stroke-width: 3px; paint-order: stroke; }
svg.chart .cth { fill: #c0392b; font-size: 9.5px; stroke: #fff; stroke-width: 3px; paint-order: stroke; }
"""
