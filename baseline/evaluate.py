"""Score a checkpoint on held-out identities (the test split by default) and write JSON."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from voxhear.baseline.calibration import gains_by_group
from voxhear.baseline.data import WindowBank, concat_banks, expand_shards, flatten_frames, load_windows
from voxhear.baseline.metrics import evaluate_motion
from voxhear.baseline.model import TalkListenModel
from voxhear.baseline.train import load_model, pick_device
from voxhear.pipeline.io import atomic_write_text

EVAL_VERSION = 1


@torch.no_grad()
def predict(model: TalkListenModel, bank: WindowBank, batch: int = 64) -> torch.Tensor:
    """(N, T, 58) predicted motion in shard units."""
    model.eval()
    dev = next(model.parameters()).device
    out = [model.denormalise_motion(model(bank.self_mel[i:i + batch].to(dev), bank.other_mel[i:i + batch].to(dev)))
           for i in range(0, len(bank), batch)]
    return torch.cat(out).cpu()


def evaluate_checkpoint(checkpoint: str | Path, shards: str | list[str], split: str = "test",
                        device: str | None = None, seed: int = 0) -> dict:
    """Metrics of the checkpoint's predictions and of the mean pose on `split`'s windows
    (a comma-separated list, e.g. `val,test`, pools several splits).

    Windows do not overlap (hop = window) and a clip's tail is padded, so every frame of every
    clip is scored once (padding is not valid and not scored).
    """
    model, ckpt = load_model(checkpoint, pick_device(device))
    cfg = model.cfg
    urls = expand_shards(shards)
    # `val,test` scores both held-out splits together (identity-disjoint from train, and each other).
    bank = concat_banks([load_windows(urls, s.strip(), cfg.window_frames, cfg.window_frames, cfg.n_mels,
                                      drop_partial=False) for s in split.split(",")])
    pred = predict(model, bank)
    norm = model.normalisation()
    metrics = evaluate_motion(
        flatten_frames(pred), flatten_frames(bank.motion), flatten_frames(bank.state), flatten_frames(bank.valid),
        list(bank.blendshape_names), norm["motion_mean"].numpy(), norm["motion_std"].numpy(), seed=seed,
        clips=bank.frame_clips())
    return {
        "eval_version": EVAL_VERSION,
        "checkpoint": str(checkpoint),
        "step": ckpt["step"],
        "variant": cfg.variant,
        "config": ckpt["config"],
        "split": split,
        "windows": len(bank),
        "clips": len(set(bank.keys)),
        "identities": sorted(set(bank.identities)),
        "seconds": round(sum(bank.lengths) / 25.0, 2),
        "sigmas": model.sigmas() if cfg.variant == "mhgk" else None,
        # Output gains fitted on the val split (1.0 without calibration): scores on val are then
        # not fully held out, those on test are.
        "gains": gains_by_group(model.motion_gain, bank.blendshape_names),
        "metrics": metrics,
    }


def format_result(result: dict) -> str:
    """A short human-readable table of one evaluation."""
    m = result["metrics"]
    t, lst = m["talking"], m["listening"]
    rows = [("", "model", "mean pose"),
            ("talk: mouth L1 (lower better)", t["model"]["mouth_l1"], t["mean_pose"]["mouth_l1"]),
            ("talk: jawOpen corr (higher)", t["model"]["jaw_open_corr"], t["mean_pose"]["jaw_open_corr"]),
            ("talk: jawOpen corr, per-clip mean", t["model"]["jaw_open_corr_clip_mean"],
             t["mean_pose"]["jaw_open_corr_clip_mean"]),
            ("listen: FD, per-clip centred (lower)", lst["model"]["fd"], lst["mean_pose"]["fd"]),
            ("listen: FD, absolute (lower)", lst["model"]["fd_absolute"], lst["mean_pose"]["fd_absolute"]),
            (f"listen: diversity (true {lst['true']['diversity']:.3f})", lst["model"]["diversity"],
             lst["mean_pose"]["diversity"])]
    lines = [f"{result['variant']} step {result['step']} on {result['split']}: {result['windows']} windows, "
             f"{result['seconds']} s, identities {', '.join(result['identities'])}; frames talking "
             f"{m['frames']['talking']}, listening {m['frames']['listening']}"]
    for name, a, b in rows:
        fa = a if isinstance(a, str) else f"{a:.4f}"
        fb = b if isinstance(b, str) else f"{b:.4f}"
        lines.append(f"  {name:<38} {fa:>10} {fb:>10}")
    if result.get("gains"):
        lines.append("  output gains (fitted on val): " + ", ".join(f"{k} {v:.2f}" for k, v in result["gains"].items()))
    lines.append(f"  beats mean pose: {m['beats_mean_pose']}")
    return "\n".join(lines) + "\n"


def write_result(result: dict, path: str | Path) -> None:
    def clean(x):
        if isinstance(x, float) and not np.isfinite(x):
            return None
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items()}
        if isinstance(x, list):
            return [clean(v) for v in x]
        return x

    atomic_write_text(Path(path), json.dumps(clean(result), indent=2) + "\n")
