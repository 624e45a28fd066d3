"""Where a source clip lands on the canvas in a given frame; shared by rendering and truth.

Both the pixels and the annotated face boxes go through `transform_at`, so a box in
`faces.parquet` is exactly the hand-annotated source box under the frame's transform.
"""

from __future__ import annotations

import numpy as np

from voxhear.benchmarks.synth.script import Placement, Shot


def shot_progress(shot: Shot, frame: int) -> float:
    """0 at the shot's first frame, 1 at its last."""
    length = shot.end_frame - shot.start_frame
    return 0.0 if length <= 1 else (frame - shot.start_frame) / (length - 1)


def transform_at(placement: Placement, progress: float,
                 face_box: tuple[float, float, float, float]) -> np.ndarray:
    """2x3 affine matrix from source pixels to canvas pixels (uniform scale and shift)."""
    s = placement.scale[0] + (placement.scale[1] - placement.scale[0]) * progress
    (x0, y0), (x1, y1) = placement.centre
    cx, cy = x0 + (x1 - x0) * progress, y0 + (y1 - y0) * progress
    bx, by = (face_box[0] + face_box[2]) / 2, (face_box[1] + face_box[3]) / 2
    return np.array([[s, 0.0, cx - s * bx], [0.0, s, cy - s * by]], dtype=np.float64)


def apply(matrix: np.ndarray, box: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    """Map a source box (x1, y1, x2, y2) to the canvas."""
    s, tx, ty = matrix[0, 0], matrix[0, 2], matrix[1, 2]
    return (s * box[0] + tx, s * box[1] + ty, s * box[2] + tx, s * box[3] + ty)
