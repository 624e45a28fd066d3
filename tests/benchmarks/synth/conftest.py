"""A tiny composed dataset shared by the synth tests (composed once per session)."""

from __future__ import annotations

from pathlib import Path

import pytest

from voxhear.benchmarks.synth import compose_dataset

from .synth_helpers import MEDIA, small_options


@pytest.fixture(scope="session")
def composed(tmp_path_factory) -> Path:
    if not (MEDIA / "faces-grid").is_dir():
        pytest.skip(f"shared media not found at {MEDIA}")
    out = tmp_path_factory.mktemp("synth") / "out"
    compose_dataset(small_options(out))
    return out
