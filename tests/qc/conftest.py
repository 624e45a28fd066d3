"""Fixtures of the QC tests: a made-up run directory (see qc_helpers)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .qc_helpers import build_run


@pytest.fixture(scope="session")
def qc_run(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("qc")
    return build_run(base / "run", base / "media")
