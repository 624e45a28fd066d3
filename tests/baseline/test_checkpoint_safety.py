"""Checkpoints are read as plain data (weights_only): a pickled object in one is refused, never built."""

from __future__ import annotations

import pytest
import torch

from tests.baseline.conftest import tiny_config
from voxhear.baseline.cli import run_from_args
from voxhear.baseline.model import TalkListenModel
from voxhear.baseline.train import CheckpointError, _make_optimizer, load_model, save_checkpoint, train
from voxhear.pipeline.cli import build_parser

BUILT: list[str] = []


def _record_build(what: str) -> str:
    BUILT.append(what)
    return what


class Payload:
    """Unpickling this calls `_record_build`: what a hostile checkpoint would do with os.system."""

    def __reduce__(self):
        return (_record_build, ("payload ran",))


def _checkpoint(path, **extra) -> None:
    cfg = tiny_config()
    torch.manual_seed(0)
    model = TalkListenModel(cfg)
    save_checkpoint(path, model, _make_optimizer(model, cfg), 3, cfg, {"best_val": 1.0, "elapsed_s": 2.0, **extra})


def test_a_checkpoint_round_trips_as_plain_data(tmp_path):
    path = tmp_path / "best.pt"
    _checkpoint(path)
    model, ckpt = load_model(path)
    assert isinstance(ckpt["config"], dict) and model.cfg == tiny_config()
    saved = torch.load(path, weights_only=True)["model"]
    assert all(torch.equal(tensor, model.state_dict()[name]) for name, tensor in saved.items())
    assert ckpt["step"] == 3 and ckpt["best_val"] == 1.0


def test_a_checkpoint_with_a_pickled_object_is_refused_without_running_it(tmp_path, capsys):
    BUILT.clear()
    path = tmp_path / "hostile.pt"
    _checkpoint(path, note=Payload())
    with pytest.raises(CheckpointError, match="other than tensors and plain data"):
        load_model(path)
    args = build_parser().parse_args(["baseline", "eval", str(path), "--shards", str(tmp_path / "*.tar")])
    assert run_from_args(args) == 2
    assert "other than tensors and plain data" in capsys.readouterr().err
    assert BUILT == []


def test_a_hostile_last_checkpoint_is_not_resumed_from(synth_shards, tmp_path):
    BUILT.clear()
    _checkpoint(tmp_path / "last.pt", note=Payload())
    with pytest.raises(CheckpointError):
        train(tiny_config(), synth_shards, tmp_path, progress=False)
    assert BUILT == []
