"""Metrics on hand-made arrays, where the right answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from tests.baseline.synth_shards import BLENDSHAPE_NAMES, BS
from voxhear.baseline.metrics import diversity, evaluate_motion, frechet_distance, mouth_indices, mouth_l1, pearson
from voxhear.pipeline.records import STATE_BOTH, STATE_LISTEN, STATE_SILENCE, STATE_TALK


def _motion(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    motion = np.zeros((n, 58), np.float32)
    motion[:, :52] = rng.uniform(0, 0.6, (n, 52))
    motion[:, 52:] = rng.normal(0, 5, (n, 6))
    return motion


def test_mouth_blendshapes_are_the_jaw_and_mouth_ones():
    idx = mouth_indices(BLENDSHAPE_NAMES)
    assert len(idx) == 27 and BS["jawOpen"] in idx and BS["eyeBlinkLeft"] not in idx


def test_known_mouth_l1_only_counts_mouth_dimensions():
    true = _motion(10)
    pred = true.copy()
    pred[:, mouth_indices(BLENDSHAPE_NAMES)] += 0.1
    pred[:, BS["browInnerUp"]] += 5.0  # not a mouth blendshape: must not count
    assert mouth_l1(pred, true, BLENDSHAPE_NAMES) == pytest.approx(0.1, abs=1e-6)


def test_pearson_and_constant_prediction():
    a = np.arange(10.0)
    assert pearson(a, 2 * a + 1) == pytest.approx(1.0)
    assert pearson(a, -a) == pytest.approx(-1.0)
    assert pearson(np.full(10, 0.3), a) == 0.0


def test_frechet_distance_of_known_gaussians():
    x = np.array([[-1.0], [1.0]])  # mean 0, variance 2 (unbiased)
    y = np.array([[2.0], [4.0]])  # mean 3, variance 2
    assert frechet_distance(x, y) == pytest.approx(9.0)
    assert frechet_distance(np.zeros((5, 1)), y) == pytest.approx(9.0 + 2.0)  # constant: |dmu|^2 + var
    assert frechet_distance(y, y) == pytest.approx(0.0, abs=1e-9)


def test_diversity_of_two_points_is_their_distance():
    assert diversity(np.array([[0.0, 0.0], [3.0, 4.0]])) == pytest.approx(5.0)
    assert diversity(np.zeros((7, 3))) == 0.0


def test_perfect_prediction_beats_mean_pose_everywhere():
    n = 400
    true = _motion(n)
    state = np.array([STATE_TALK, STATE_LISTEN, STATE_BOTH, STATE_SILENCE] * (n // 4))
    valid = np.ones(n, bool)
    mean, std = true.mean(0), true.std(0)
    clips = np.repeat(np.arange(4), n // 4)
    result = evaluate_motion(true.copy(), true, state, valid, BLENDSHAPE_NAMES, mean, std, clips=clips)
    assert result["frames"] == {"valid": n, "talking": n // 2, "listening": n // 4}
    model, base = result["talking"]["model"], result["talking"]["mean_pose"]
    assert model["mouth_l1"] == 0.0 and model["jaw_open_corr"] == pytest.approx(1.0)
    assert model["jaw_open_corr_clip_mean"] == pytest.approx(1.0)
    assert base["mouth_l1"] > 0.1 and base["jaw_open_corr"] == 0.0 and base["jaw_open_corr_clip_mean"] == 0.0
    listen = result["listening"]
    assert listen["model"]["fd"] == pytest.approx(0.0, abs=1e-6) and listen["mean_pose"]["fd"] > 10
    assert listen["model"]["diversity"] == pytest.approx(listen["true"]["diversity"])
    assert listen["mean_pose"]["diversity"] == 0.0
    assert result["beats_mean_pose"]["all"]


def test_invalid_frames_are_not_scored():
    true = _motion(8)
    pred = true.copy()
    pred[:4] += 100.0  # garbage on frames without a face mesh
    state = np.full(8, STATE_TALK)
    valid = np.array([False] * 4 + [True] * 4)
    result = evaluate_motion(pred, true, state, valid, BLENDSHAPE_NAMES, true.mean(0), true.std(0))
    assert result["talking"]["model"]["mouth_l1"] == 0.0
    assert result["frames"]["talking"] == 4


def test_listening_metrics_centre_each_clip_on_its_own_mean():
    rng = np.random.default_rng(1)
    dynamics = rng.normal(0, 1, (200, 58))
    true = dynamics + np.where(np.arange(200)[:, None] < 100, 5.0, -5.0)  # two people, two resting poses
    pred = dynamics.copy()  # right motion, wrong resting pose
    state = np.full(200, STATE_LISTEN)
    clips = np.repeat([0, 1], 100)
    ones = np.ones(58)
    result = evaluate_motion(pred, true, state, np.ones(200, bool), BLENDSHAPE_NAMES, np.zeros(58), ones, clips=clips)
    listen = result["listening"]
    assert listen["model"]["fd"] == pytest.approx(0.0, abs=1e-6)
    assert listen["model"]["fd_absolute"] > 100
    centred = np.concatenate([dynamics[:100] - dynamics[:100].mean(0), dynamics[100:] - dynamics[100:].mean(0)])
    assert listen["mean_pose"]["fd"] == pytest.approx(np.trace(np.cov(centred, rowvar=False)), rel=1e-6)


def test_ablation_table_of_a_split_without_listening_frames(tmp_path):
    import json

    from voxhear.baseline.config import BaselineConfig
    from voxhear.baseline.table import ablation_table

    talking = {"mouth_l1": 0.02, "jaw_open_corr": 0.3, "jaw_open_corr_clip_mean": 0.2}
    listening = {"fd": None, "diversity": None, "fd_absolute": None}
    paths = []
    for seed, loss in ((0, "l1"), (1, "l1"), (0, "mse")):
        result = {"config": BaselineConfig(seed=seed, loss=loss).to_dict(), "split": "val", "identities": ["p"],
                  "metrics": {"frames": {"talking": 10, "listening": 0},
                              "talking": {"model": talking, "mean_pose": talking},
                              "listening": {"model": listening, "mean_pose": listening, "true": {"diversity": None}}}}
        paths.append(tmp_path / f"{seed}-{loss}.json")
        paths[-1].write_text(json.dumps(result))
    table = ablation_table(paths)
    assert "| mhgk | 2 | 0.0200 ± 0.0000 |" in table and '| mhgk (loss="mse") | 1 |' in table
    assert "no listening frames" in table
