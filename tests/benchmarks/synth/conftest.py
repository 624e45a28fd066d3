"""A tiny composed dataset shared by the synth tests (composed once per session)."""

from __future__ import annotations

from pathlib import Path

import pytest

from voxhear.benchmarks.synth import compose_dataset

from tests.conftest import require_shared

from .synth_helpers import MEDIA, small_options


@pytest.fixture(scope="session")
def composed(tmp_path_factory) -> Path:
    require_shared(MEDIA / "faces-grid", "the shared GRID face clips")
    out = tmp_path_factory.mktemp("synth") / "out"
    compose_dataset(small_options(out))
    return out
