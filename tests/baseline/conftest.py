"""Fixtures of the baseline tests: synthetic shards (written once per session) and a tiny config."""

from __future__ import annotations

import pytest
import torch

from tests.baseline.synth_shards import write_synthetic_shards
from voxhear.baseline.config import BaselineConfig


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    # The models here are tiny; on a shared 2-core machine a second intra-op thread costs more
    # in synchronisation than it gains.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def synth_shards(tmp_path_factory) -> str:
    """Glob of synthetic shards: identities id0-id2 train, id3 val, id4 test; 2 clips of 6 s each."""
    folder = tmp_path_factory.mktemp("synth_shards")
    write_synthetic_shards(folder, clips_per_identity=2, n_frames=150, seed=0)
    return str(folder / "*.tar")


def tiny_config(**overrides) -> BaselineConfig:
    values = dict(d_model=32, n_heads=4, n_layers=1, ff_mult=2, window_frames=50, train_hop_frames=10,
                  batch_size=8, steps=6, warmup_steps=2, eval_every=3, dropout=0.1)
    values.update(overrides)
    return BaselineConfig(**values)
