"""The evaluation as JSON (eval.json) and as a plain-text table."""

from __future__ import annotations

from typing import Any


def format_table(result: dict) -> str:
    """Per metric: a fixed-width table with one row per truth video and the pooled value, then
    each headline figure's pooled value, bootstrap interval over videos and worst video."""
    lines = [f"evaluation of {result['run_dir']} against {result['truth_dir']}"]
    boot = (result.get("settings") or {}).get("bootstrap") or {}
    for name, metric in result["metrics"].items():
        lines.append("")
        if not metric.get("available"):
            lines.append(f"{name}: not available ({metric.get('reason', '')})")
            continue
        columns = metric["columns"]
        header = ["video"] + columns
        rows = [[video + (" (missing)" if row.get("missing") else "")] + [_cell(row.get(c)) for c in columns]
                for video, row in metric["per_video"].items()]
        rows.append(["all (pooled)"] + [_cell(metric["summary"].get(c)) for c in columns])
        widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
        extra = {k: v for k, v in metric["summary"].items() if k not in columns}
        lines.append(f"{name}: " + ", ".join(f"{k}={v}" for k, v in extra.items()))
        for i, row in enumerate([header] + rows):
            if i == len(rows):  # before the total
                lines.append("  ".join("-" * w for w in widths))
            lines.append("  ".join(str(c).ljust(w) if j == 0 else str(c).rjust(w)
                                   for j, (c, w) in enumerate(zip(row, widths))))
        if metric.get("figures"):
            lines += _figure_lines(metric["figures"], boot)
    if result.get("unmatched_sources"):
        lines.append("")
        lines.append(f"sources with no truth ({len(result['unmatched_sources'])}):")
        lines += [f"  {uri}" for uri in result["unmatched_sources"]]
    if result.get("duplicate_sources"):
        lines.append("")
        count = len(result["duplicate_sources"])
        lines.append(f"sources ignored because an earlier one has the same video id ({count}):")
        lines += [f"  {uri}" for uri in result["duplicate_sources"]]
    if result.get("missing_videos"):
        lines.append("")
        lines.append(f"truth videos not in the run, counted as missed: {', '.join(result['missing_videos'])}")
    return "\n".join(lines) + "\n"


def _figure_lines(figures: dict[str, dict], boot: dict) -> list[str]:
    """The figures block: pooled value, interval over videos, worst video."""
    level = round(100 * float(boot.get("level", 0.95)))
    title = (f"  pooled [{level}% interval: {boot.get('resamples', '?')} resamples of the videos, seed "
             f"{boot.get('seed', '?')}] and the worst video:")
    header = ["figure", "pooled", f"{level}% interval", "worst", "worst video", "better"]
    rows = []
    for key, fig in figures.items():
        interval = fig.get("interval")
        rows.append([key, _cell(fig.get("pooled")),
                     f"[{_cell(interval[0])}, {_cell(interval[1])}]" if interval else "-",
                     _cell(fig.get("worst")), fig.get("worst_video") or "-", fig.get("better", "")])
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    out = [title]
    for row in [header] + rows:
        out.append("  " + "  ".join(str(c).ljust(w) if j in (0, 4, 5) else str(c).rjust(w)
                                    for j, (c, w) in enumerate(zip(row, widths))).rstrip())
    return out


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)
