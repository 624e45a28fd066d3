"""Shapes of every variant, and that the attention biases do what they say."""

from __future__ import annotations

import pytest
import torch

from tests.baseline.conftest import tiny_config
from voxhear.baseline.model import MOTION_DIM, TalkListenModel, temporal_bias


@pytest.mark.parametrize("variant", ["mhgk", "local", "global"])
def test_every_variant_maps_two_streams_to_motion(variant):
    torch.manual_seed(0)
    model = TalkListenModel(tiny_config(variant=variant, n_layers=2)).eval()
    self_mel, other_mel = torch.randn(3, 40, 80), torch.randn(3, 40, 80)
    out = model(self_mel, other_mel)
    assert out.shape == (3, 40, MOTION_DIM)
    # The zero-initialised head predicts the training mean until trained.
    assert torch.all(out == 0)
    prior = model(None, None, motion=torch.randn(3, 40, MOTION_DIM), motion_mask=torch.rand(3, 40) < 0.5)
    assert prior.shape == (3, 40, MOTION_DIM)


def test_mhgk_bias_is_minus_squared_distance_over_two_sigma_squared():
    sigma = torch.tensor([1.0, 4.0])
    pos = torch.arange(6)
    bias = temporal_bias("mhgk", pos, pos.repeat(2), sigma, local_window=0)
    assert bias.shape == (2, 6, 12)
    assert bias[0, 3, 3] == 0 and bias[0, 3, 9] == 0  # same frame, self and other stream
    assert bias[0, 3, 5].item() == pytest.approx(-4 / 2)
    assert bias[1, 3, 5].item() == pytest.approx(-4 / 32)
    local = temporal_bias("local", pos, pos, None, local_window=1)
    assert local[0, 3, 2] == 0 and local[0, 3, 4] == 0 and local[0, 3, 5] == float("-inf")
    assert temporal_bias("global", pos, pos, None, 1) is None


def _cross_weights(variant: str, **cfg) -> torch.Tensor:
    torch.manual_seed(0)
    model = TalkListenModel(tiny_config(variant=variant, **cfg)).eval()
    attn = model.blocks[0].cross_attn
    attn.keep_weights = True
    model(torch.randn(2, 50, 80), torch.randn(2, 50, 80))
    return attn.last_weights  # (batch, heads, 50 queries, 100 keys)


def _mass_within(weights: torch.Tensor, radius: int) -> torch.Tensor:
    """Per head: mean attention mass on keys (either stream) within `radius` frames of the query."""
    q = torch.arange(50)[:, None]
    k = torch.arange(50).repeat(2)[None, :]
    near = ((q - k).abs() <= radius).float()
    return (weights * near).sum(-1).mean(dim=(0, 2))


def test_narrow_mhgk_head_attends_locally_and_wide_head_does_not():
    weights = _cross_weights("mhgk", sigmas=[0.5, 2.0, 8.0, 64.0])
    mass = _mass_within(weights, 1)
    assert mass[0] > 0.95  # sigma 0.5 frames: two frames away is already down by e^-8
    assert mass[3] < 0.15  # sigma 64 frames: nearly uniform over 100 keys
    assert torch.all(mass[:-1] > mass[1:])  # narrow to wide


def test_local_window_is_strict_and_global_is_not():
    local = _cross_weights("local", local_window=2)
    assert torch.allclose(_mass_within(local, 2), torch.ones(4))
    assert _mass_within(local, 1).max() < 1.0
    plain = _cross_weights("global")
    assert _mass_within(plain, 2).max() < 0.5


def test_sigma_learns_or_stays_fixed():
    learned = TalkListenModel(tiny_config(learn_sigma=True))
    fixed = TalkListenModel(tiny_config(learn_sigma=False, sigmas=[1, 2, 4, 8]))
    assert any(n.endswith("log_sigma") for n, _ in learned.named_parameters())
    assert not any(n.endswith("log_sigma") for n, _ in fixed.named_parameters())
    assert fixed.sigmas()[0] == [1.0, 2.0, 4.0, 8.0]
