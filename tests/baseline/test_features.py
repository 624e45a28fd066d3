"""Log-mel features land on the video's frames."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from voxhear.baseline.features import HOP, LogMel


def test_one_feature_vector_per_video_frame_aligned_to_the_frame():
    n_frames = 20
    wave = torch.zeros(2, n_frames * HOP)
    t = torch.arange(HOP) / 16000
    wave[0, 7 * HOP:8 * HOP] = torch.sin(2 * np.pi * 1000 * t)  # a tone in frame 7 only
    feats = LogMel(80)(wave)
    assert feats.shape == (2, n_frames, 80)
    energy = feats[0].exp().sum(-1)
    assert int(energy.argmax()) == 7
    assert torch.all(feats[1] == feats[1, 0, 0])  # silence is the floor everywhere


def test_rejects_audio_that_is_not_whole_frames():
    with pytest.raises(ValueError):
        LogMel(80)(torch.zeros(1, 10 * HOP + 5))
