"""Fixtures for the face stage tests: the shared model store and real GRID face frames."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.conftest import SHARED_MODELS, require_shared
from voxhear.pipeline.models import ModelStore

REPO = Path(__file__).resolve().parents[3]
GRID_DIR = REPO.parent / "shared" / "media" / "faces-grid"
GRID_BOXES = json.loads((REPO / "benchmarks" / "synth" / "grid_face_boxes.json").read_text())["boxes"]


@pytest.fixture(scope="session")
def model_store() -> ModelStore:
    require_shared(SHARED_MODELS / "MODELS.tsv", "the shared model store")
    return ModelStore(store_dir=str(SHARED_MODELS), allow_download=False)


def grid_frames(name: str, count: int | None = None) -> list[np.ndarray]:
    """Decoded BGR frames (360x288) of one GRID clip."""
    path = GRID_DIR / f"{name}.mpg"
    require_shared(path, f"GRID clip {name}")
    capture = cv2.VideoCapture(str(path))
    frames = []
    while count is None or len(frames) < count:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames


def grid_frame(name: str, index: int = 40) -> np.ndarray:
    return grid_frames(name, index + 1)[index]
