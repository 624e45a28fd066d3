"""Training: checkpoints hold what they should, and a resumed run repeats an uninterrupted one."""

from __future__ import annotations

import json

import pytest
import torch

from tests.baseline.conftest import tiny_config
from voxhear.baseline.config import BaselineConfig, BaselineConfigError
from voxhear.baseline.train import load_model, lr_at, train
from voxhear.pipeline.settings import Bounds, ConfigError, bounds_of


def test_resume_continues_at_the_right_step_with_identical_results(synth_shards, tmp_path):
    cfg = tiny_config(prior_steps=2)
    whole = train(cfg, synth_shards, tmp_path / "whole", progress=False)
    first = train(cfg, synth_shards, tmp_path / "split", stop_at=3, progress=False)
    assert first["step"] == 3
    halfway = torch.load(tmp_path / "split" / "last.pt", weights_only=True)
    assert halfway["step"] == 3 and set(halfway) >= {"model", "optimizer", "step", "config", "norm"}
    assert halfway["config"] == cfg.to_dict()
    second = train(cfg, synth_shards, tmp_path / "split", progress=False)
    assert second["step"] == whole["step"] == cfg.total_steps == 8
    a = torch.load(tmp_path / "whole" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "split" / "last.pt", weights_only=True)
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
    assert a["val_loss"] == b["val_loss"]
    steps = [json.loads(line)["step"] for line in (tmp_path / "split" / "log.jsonl").read_text().splitlines()]
    assert steps == [3, 6, 8]


def test_resume_with_another_config_is_refused(synth_shards, tmp_path):
    train(tiny_config(steps=2, eval_every=2), synth_shards, tmp_path, progress=False)
    with pytest.raises(ValueError, match="variant"):
        train(tiny_config(steps=2, eval_every=2, variant="global"), synth_shards, tmp_path, progress=False)


def test_checkpoint_restores_the_model_and_its_normalisation(synth_shards, tmp_path):
    train(tiny_config(steps=3), synth_shards, tmp_path, progress=False)
    model, ckpt = load_model(tmp_path / "best.pt")
    assert model.cfg == BaselineConfig.from_dict(ckpt["config"])
    # Normalisation comes from the train split: yaw differs by identity, so its std is degrees, not 1.
    assert 1.0 < float(ckpt["norm"]["motion_std"][52]) < 20.0
    assert torch.equal(model.motion_std, ckpt["norm"]["motion_std"])


def test_config_overrides_are_validated():
    cfg = BaselineConfig().with_overrides(["variant=local", "n_heads=8", "lr=0.002"])
    assert cfg.variant == "local" and len(cfg.sigmas) == 8 and cfg.lr == 0.002
    with pytest.raises(BaselineConfigError, match="did you mean 'variant'"):
        BaselineConfig().with_overrides(["varaint=local"])
    with pytest.raises(BaselineConfigError):
        BaselineConfig().with_overrides(["variant=conv"])
    with pytest.raises(BaselineConfigError):
        BaselineConfig().with_overrides(["steps=many"])


def test_config_uses_the_shared_mechanism():
    # One config mechanism (voxhear.pipeline.settings): the same error type, messages and bounds.
    assert issubclass(BaselineConfigError, ConfigError) and issubclass(BaselineConfigError, ValueError)
    assert bounds_of(BaselineConfig, "dropout") == Bounds(ge=0, lt=1)
    with pytest.raises(BaselineConfigError, match=r"unknown config key 'n_head' \(did you mean 'n_heads'\?\)"):
        BaselineConfig.from_dict({"n_head": 8})
    # Out of range: refused naming the key, whether built directly, from a dict or by override.
    with pytest.raises(BaselineConfigError, match=r"config key 'lr' must be > 0"):
        BaselineConfig(lr=0.0)
    with pytest.raises(BaselineConfigError, match=r"config key 'aug_warp' must be < 0.5"):
        BaselineConfig.from_dict({"aug_warp": 0.5})
    with pytest.raises(BaselineConfigError, match=r"config key 'sigmas' item -1.0 must be > 0"):
        BaselineConfig().with_overrides(["sigmas=[1, -1, 4, 8]"])
    with pytest.raises(BaselineConfigError, match=r"config key 'dropout' must be a number"):
        BaselineConfig.from_dict({"dropout": True})
    # Cross-field rules (check()).
    with pytest.raises(BaselineConfigError, match=r"config key 'd_model' must be divisible by n_heads"):
        BaselineConfig().with_overrides(["d_model=130"])
    with pytest.raises(BaselineConfigError, match=r"config key 'sigmas' needs one width per head \(n_heads=4\)"):
        BaselineConfig(sigmas=[1.0, 2.0])
    # A checkpoint's dict round-trips; ints are accepted for floats.
    cfg = BaselineConfig(n_heads=2, sigmas=[2.0, 8.0])
    assert BaselineConfig.from_dict(cfg.to_dict()) == cfg
    assert BaselineConfig.from_dict({"lr": 1}).lr == 1.0


def test_learning_rate_warms_up_then_decays_to_a_tenth():
    cfg = BaselineConfig(steps=100, warmup_steps=10, lr=1.0)
    assert lr_at(0, cfg) == pytest.approx(0.1)
    assert lr_at(9, cfg) == pytest.approx(1.0)
    assert lr_at(99, cfg) == pytest.approx(0.1, abs=1e-3)


def test_calibration_changes_the_output_gains_but_not_training(synth_shards, tmp_path):
    plain = train(tiny_config(steps=3, calibrate=False), synth_shards, tmp_path / "plain", progress=False)
    calibrated = train(tiny_config(steps=3, calibrate=True), synth_shards, tmp_path / "cal", progress=False)
    a = torch.load(tmp_path / "plain" / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "cal" / "last.pt", weights_only=True)["model"]
    for name, tensor in a.items():
        if name != "motion_gain":
            assert torch.equal(tensor, b[name]), name
    assert torch.equal(a["motion_gain"], torch.ones(58)) and not torch.equal(b["motion_gain"], torch.ones(58))
    assert plain["best_val_loss"] == calibrated["best_val_loss"]


def test_motion_loss_is_l1_or_mse_on_valid_frames_and_their_differences():
    from voxhear.baseline.train import motion_loss

    pred, target = torch.zeros(1, 3, 2), torch.tensor([[[1.0, -1.0], [2.0, -2.0], [9.0, 9.0]]])
    valid = torch.tensor([[True, True, False]])  # the last frame, and its difference, do not count
    assert motion_loss(pred, target, valid, 0.0, "l1") == pytest.approx((1 + 1 + 2 + 2) / 4)
    assert motion_loss(pred, target, valid, 0.0, "mse") == pytest.approx((1 + 1 + 4 + 4) / 4)
    assert motion_loss(pred, target, valid, 0.5, "l1") == pytest.approx(1.5 + 0.5 * (1 + 1) / 2)
    with pytest.raises(BaselineConfigError, match="loss"):
        BaselineConfig(loss="huber")


def test_clip_means_replaced_counts_overlapping_frames_once():
    from voxhear.baseline.data import WindowBank, with_clip_means_replaced

    # Clip "a": frames 0-3 seen through two overlapping 3-frame windows (frames 1-2 twice);
    # clip "b": one window whose last frame has no face mesh.
    motion = torch.tensor([[[0.0], [1.0], [2.0]], [[1.0], [2.0], [30.0]], [[4.0], [6.0], [99.0]]])
    valid = torch.tensor([[True, True, True], [True, True, True], [True, True, False]])
    bank = WindowBank(self_mel=torch.zeros(3, 3, 1), other_mel=torch.zeros(3, 3, 1), motion=motion, valid=valid,
                      state=torch.zeros(3, 3, dtype=torch.long), keys=["a", "a", "b"], starts=[0, 1, 0],
                      lengths=[3, 3, 3], identities=["p", "p", "q"])
    out = with_clip_means_replaced(bank, torch.tensor([10.0]))
    # Clip a's frames are 0, 1, 2, 30: mean 8.25, whichever window a frame is seen through.
    assert torch.allclose(out.motion[0, :, 0], torch.tensor([0.0, 1.0, 2.0]) + 1.75)
    assert torch.allclose(out.motion[1, :, 0], torch.tensor([1.0, 2.0, 30.0]) + 1.75)
    # Clip b's valid frames 4 and 6 have mean 5; the invalid frame stays 0.
    assert torch.allclose(out.motion[2, :, 0], torch.tensor([9.0, 11.0, 0.0]))
    assert torch.equal(bank.motion, motion)  # the input bank is left alone
