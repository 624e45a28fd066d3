"""Output gains: the slope of true on predicted motion per group, per-clip centred, within [0, 1]."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from voxhear.baseline.calibration import fit_gains, gain_vector, gains_by_group, group_of_outputs
from voxhear.baseline.data import BLENDSHAPE_NAMES, flatten_frames
from voxhear.baseline.model import N_POSE

GROUPS = group_of_outputs(BLENDSHAPE_NAMES)


def _dims(group):
    return [i for i, g in enumerate(GROUPS) if g == group]


def test_groups_cover_mouth_face_and_head():
    assert GROUPS[BLENDSHAPE_NAMES.index("jawOpen")] == "mouth"
    assert GROUPS[BLENDSHAPE_NAMES.index("browInnerUp")] == "face"
    assert GROUPS[-N_POSE:] == ["head"] * N_POSE and len(GROUPS) == 58


def test_slope_per_group_ignores_each_clips_offset_and_never_amplifies():
    gen = torch.Generator().manual_seed(0)
    true = torch.randn(4, 50, 58, generator=gen)
    pred = torch.zeros_like(true)
    pred[..., _dims("mouth")] = 2.0 * true[..., _dims("mouth")]                 # overshoots twice: gain 1/2
    pred[..., _dims("face")] = torch.randn(4, 50, len(_dims("face")), generator=gen)  # unrelated: ~0
    pred[..., _dims("head")] = 0.5 * true[..., _dims("head")]                   # too timid: not boosted
    clips = np.repeat([0, 0, 1, 1], 50)  # four 50-frame windows of two clips
    pred = pred + torch.tensor([3.0, 3.0, -5.0, -5.0])[:, None, None]          # per-clip offsets
    valid = torch.ones(4, 50, dtype=torch.bool)
    gains = fit_gains(flatten_frames(pred), flatten_frames(true), flatten_frames(valid), clips, GROUPS)
    assert abs(gains["mouth"] - 0.5) < 0.01
    assert gains["face"] < 0.1
    assert gains["head"] == 1.0
    # Invalid frames carry no weight, whatever they hold.
    valid[:, :10] = False
    pred[:, :10] = 1e6
    assert abs(fit_gains(flatten_frames(pred), flatten_frames(true), flatten_frames(valid), clips,
                         GROUPS)["mouth"] - 0.5) < 0.01
    vector = gain_vector(gains, GROUPS)
    assert vector.shape == (58,) and vector[_dims("mouth")].eq(gains["mouth"]).all()
    assert gains_by_group(vector, BLENDSHAPE_NAMES) == pytest.approx(gains)
