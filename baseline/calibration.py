"""Output gains fitted on the validation identities: how much of the predicted motion to keep.

A model trained on a handful of people learns some motion that belongs to those people rather
than to the audio: one training speaker raises the brows on a certain word, another turns the
head. On a new person that motion is noise, and a regression that predicts it at full amplitude
is worse than one that predicts less of it. The remedy is the classic recalibration of a
regression: regress the true motion on the predicted motion over held-out people and scale the
prediction by the slope. The slope is fitted per group of outputs that the audio explains to a
different degree, and each group gets one number, so three numbers are fitted in all:

- `mouth`: the jaw* and mouth* blendshapes (lip sync; the audio explains most of it);
- `face`: the other blendshapes (brows, eyes, cheeks; little to do with speech);
- `head`: the 6 pose values (yaw, pitch, roll, translation).

Each clip's motion is taken relative to its own mean first (a new person's resting face is not
something the audio can predict), and the slope is clipped to [0, 1]: the gains only ever shrink
a prediction toward the training mean, never amplify what the model is unsure of.
"""

from __future__ import annotations

import torch

GROUPS = ("mouth", "face", "head")


def group_of_outputs(blendshape_names: tuple[str, ...] | list[str], n_pose: int) -> list[str]:
    """The calibration group of each output dimension: blendshapes in `blendshape_names` order, then pose."""
    groups = ["mouth" if str(n).startswith(("jaw", "mouth")) else "face" for n in blendshape_names]
    return groups + ["head"] * n_pose


def centre_per_window_clip(x: torch.Tensor, valid: torch.Tensor, clip_index: torch.Tensor) -> torch.Tensor:
    """(N, T, D) minus the mean over valid frames of the clip each window belongs to (clip_index: (N,))."""
    out = x.clone()
    for clip in clip_index.unique():
        rows = clip_index == clip
        w = valid[rows].float()[..., None]
        mean = (x[rows] * w).sum((0, 1)) / w.sum((0, 1)).clamp_min(1.0)
        out[rows] = x[rows] - mean
    return out


def fit_gains(pred: torch.Tensor, true: torch.Tensor, valid: torch.Tensor, clip_index: torch.Tensor,
              groups: list[str]) -> dict[str, float]:
    """Least-squares slope of true on predicted motion per group, clipped to [0, 1].

    Args:
        pred: (N, T, D) predicted normalised motion (before any gain).
        true: (N, T, D) true normalised motion.
        valid: (N, T) frames with a face mesh.
        clip_index: (N,) which clip each window is from (for the per-clip centring).
        groups: Group name of each of the D outputs.

    Returns:
        Gain per group; 1.0 for a group with no predicted motion at all.
    """
    p = centre_per_window_clip(pred.double(), valid, clip_index)[valid]
    t = centre_per_window_clip(true.double(), valid, clip_index)[valid]
    gains = {}
    for group in GROUPS:
        dims = [i for i, g in enumerate(groups) if g == group]
        pp, tt = p[:, dims], t[:, dims]
        energy = float((pp * pp).sum())
        gains[group] = 1.0 if energy <= 1e-12 else min(max(float((pp * tt).sum()) / energy, 0.0), 1.0)
    return gains


def gain_vector(gains: dict[str, float], groups: list[str]) -> torch.Tensor:
    """(D,) gain of each output dimension."""
    return torch.tensor([gains[g] for g in groups], dtype=torch.float32)
