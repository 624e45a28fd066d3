"""Real (small) videos and an uninterrupted reference run of the shot stages, shared by the tests
that run the real stages (Ray worker faults, a full disk)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import SHOT_STAGES, make_video
from voxhear.pipeline.config import load_config
from voxhear.pipeline.runner import run_pipeline

MEDIA_SETTINGS = ["shards.max_samples=2", "ray.num_cpus=2", SHOT_STAGES]


def media_config(inputs: Path, run_dir: Path, *overrides: str, runner: str = "local"):
    return load_config(
        None, [f"inputs=[{inputs}]", f"run_dir={run_dir}", f"runner={runner}", *MEDIA_SETTINGS, *overrides]
    )


@pytest.fixture(scope="session")
def media_inputs(tmp_path_factory) -> Path:
    """Two videos of two shots each and a broken file (a `failed` row)."""
    folder = tmp_path_factory.mktemp("media-inputs")
    make_video(folder / "a.mp4", seconds=2.0, cuts=2)
    (folder / "b_broken.mp4").write_text("not a video")
    make_video(folder / "c.mp4", seconds=2.4, cuts=2, size="176x144")
    return folder


@pytest.fixture(scope="session")
def media_reference(media_inputs, tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("media-reference") / "run"
    summary = run_pipeline(media_config(media_inputs, run_dir), show_progress=False)
    assert summary.status_counts == {"ok": 2, "failed": 1} and summary.clips == 4
    return run_dir
