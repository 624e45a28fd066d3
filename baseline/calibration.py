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

import numpy as np
import torch

from voxhear.baseline.metrics import centre_per_clip, mouth_indices
from voxhear.baseline.model import N_POSE

GROUPS = ("mouth", "face", "head")


def group_of_outputs(blendshape_names: tuple[str, ...] | list[str]) -> list[str]:
    """The calibration group of each output: the blendshapes in `blendshape_names` order, then the pose.

    `mouth` is the metrics' own set of mouth blendshapes, so the gain scales what mouth L1 scores.
    """
    groups = ["face"] * len(blendshape_names)
    for i in mouth_indices(list(blendshape_names)):
        groups[i] = "mouth"
    return groups + ["head"] * N_POSE


def fit_gains(pred: np.ndarray, true: np.ndarray, valid: np.ndarray, clips: np.ndarray,
              groups: list[str]) -> dict[str, float]:
    """Least-squares slope of true on predicted motion per group, clipped to [0, 1].

    Args:
        pred: (frames, D) predicted normalised motion (before any gain).
        true: (frames, D) true normalised motion.
        valid: (frames,) frames with a face mesh.
        clips: (frames,) clip id of each frame (for the per-clip centring).
        groups: Group name of each of the D outputs.

    Returns:
        Gain per group; 1.0 for a group with no predicted motion at all.
    """
    valid = np.asarray(valid, bool)
    p = centre_per_clip(pred, clips, valid)[valid]
    t = centre_per_clip(true, clips, valid)[valid]
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


def gains_by_group(gain: torch.Tensor, blendshape_names: tuple[str, ...] | list[str]) -> dict[str, float]:
    """The per-output gain vector back as one number per group (every output of a group shares it)."""
    return dict(zip(group_of_outputs(blendshape_names), gain.tolist()))
