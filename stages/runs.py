"""Runs of True in a per-frame mask: the one run finder of the audio and talk stages."""

from __future__ import annotations

import numpy as np


def runs_of(mask: np.ndarray, min_frames: int = 1) -> list[tuple[int, int]]:
    """[a, b) of every run of True in `mask` at least `min_frames` long."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True) if b - a >= min_frames]
