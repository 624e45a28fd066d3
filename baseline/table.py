"""`voxhear baseline table`: a Markdown table of several evaluations, mean ± sd per variant.

Runs are grouped by their config with the seed left out (so `mhgk` with and without prior
pretraining are different rows); the mean-pose baseline, the same for every run trained on the
same train split, is the last row.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from voxhear.baseline.config import VARIANTS, BaselineConfig

COLUMNS = (
    ("mouth L1 ↓", "talking", "mouth_l1", "{:.4f}"),
    ("jawOpen r ↑", "talking", "jaw_open_corr", "{:.3f}"),
    ("jawOpen r per clip ↑", "talking", "jaw_open_corr_clip_mean", "{:.3f}"),
    ("listen FD ↓", "listening", "fd", "{:.2f}"),
    ("listen diversity", "listening", "diversity", "{:.2f}"),
    ("listen FD absolute ↓", "listening", "fd_absolute", "{:.1f}"),
)


def _label(result: dict) -> str:
    """The variant, the prior, and every other setting that differs from the defaults (not the seed)."""
    cfg = result["config"]
    label = cfg["variant"]
    if cfg.get("prior_steps"):
        label += f" + prior ({cfg['prior_steps']} steps)"
    defaults = BaselineConfig(n_heads=cfg.get("n_heads", BaselineConfig.n_heads)).to_dict()
    changed = [f"{k}={json.dumps(v)}" for k, v in cfg.items()
               if k not in ("variant", "prior_steps", "seed") and k in defaults and v != defaults[k]]
    return label + (f" ({', '.join(changed)})" if changed else "")


def _cell(values: list[float], fmt: str) -> str:
    values = [v for v in values if v is not None and np.isfinite(v)]
    if not values:
        return "–"
    if len(values) == 1:
        return fmt.format(values[0])
    return f"{fmt.format(np.mean(values))} ± {fmt.format(np.std(values, ddof=1))}"


def ablation_table(paths: list[str | Path]) -> str:
    """Markdown table of the eval JSONs at `paths` (mean ± sample sd over seeds)."""
    results = [json.loads(Path(p).read_text()) for p in paths]
    groups: dict[str, list[dict]] = {}
    for result in results:
        groups.setdefault(_label(result), []).append(result)
    first = results[0]["metrics"]
    true_div = first["listening"]["true"]["diversity"]
    header = ["model", "seeds"] + [c[0] for c in COLUMNS]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    order = {v: i for i, v in enumerate(VARIANTS)}
    for label, group in sorted(groups.items(), key=lambda g: (order.get(g[0].split()[0], 9), g[0])):
        cells = [_cell([r["metrics"][part]["model"][key] for r in group], fmt) for _, part, key, fmt in COLUMNS]
        lines.append(f"| {label} | {len(group)} | " + " | ".join(cells) + " |")
    base = [_cell([first[part]["mean_pose"][key]], fmt) for _, part, key, fmt in COLUMNS]
    lines.append("| mean pose | – | " + " | ".join(base) + " |")
    splits = sorted({r["split"] for r in results})
    frames = first["frames"]
    lines.append("")
    diversity = f"{true_div:.2f}" if isinstance(true_div, (int, float)) and np.isfinite(true_div) else "– (no listening frames)"
    lines.append(f"Split {', '.join(splits)}: {frames['talking']} talking and {frames['listening']} listening frames "
                 f"of {', '.join(results[0]['identities'])}; true listening diversity {diversity}.")
    return "\n".join(lines) + "\n"
