"""MediaPipe Tasks FaceLandmarker on a track's face crops, in VIDEO mode.

One landmarker per track: VIDEO mode keeps state between frames (it follows the face from the
previous landmarks instead of running its detector every frame), so tracks must not share one.
Landmarks come back normalized to the crop; `pose_from_matrix` turns the facial transformation
matrix into yaw, pitch and roll.

mediapipe 1.2.2's landmarker prints a TypeError from `__del__` at interpreter exit unless it is
closed explicitly: `LandmarkTracker` is a context manager and closes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

N_LANDMARKS = 478
N_BLENDSHAPES = 52
# Input side for the landmarker; its own models work at 256 px, so larger crops only cost resizing.
LANDMARK_INPUT = 256


@dataclass(slots=True)
class FaceMesh:
    """What the landmarker found on one crop.

    Attributes:
        landmarks: (478, 3) float32; x, y in [0, 1] of the crop, z on the x scale (MediaPipe's).
        blendshapes: (52,) float32 scores in MediaPipe's order (`blendshape_names`).
        matrix: (4, 4) float32 facial transformation matrix (canonical face -> crop camera).
    """

    landmarks: np.ndarray
    blendshapes: np.ndarray
    matrix: np.ndarray


class LandmarkTracker:
    """A FaceLandmarker in VIDEO mode that follows one face track at a time.

    Creating a landmarker costs about 0.25 s of CPU, more than 30 frames of landmarks, so a worker
    reuses them: `begin` starts the next track (the landmarker's clock jumps ahead, and the
    track's first crop is run once so that the tracking state left by the previous face is
    replaced before any frame is recorded; the residue measured on GRID faces was 0.4 px mean
    on a 256 px crop after that one frame, below the frame-to-frame jitter of the landmarks).
    `process` takes track-relative milliseconds.
    """

    def __init__(self, model_path: Path, min_confidence: float = 0.5) -> None:
        from mediapipe.tasks.python import BaseOptions, vision

        options = vision.FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(model_path)),
            running_mode=vision.RunningMode.VIDEO,
            num_faces=1,
            min_face_detection_confidence=min_confidence,
            min_face_presence_confidence=min_confidence,
            min_tracking_confidence=min_confidence,
            output_face_blendshapes=True,
            output_facial_transformation_matrixes=True,
        )
        self._landmarker = vision.FaceLandmarker.create_from_options(options)
        self.blendshape_names: list[str] = []
        self._last_ms = -1
        self._offset_ms = 0

    def begin(self, first_crop_rgb: np.ndarray | None = None) -> None:
        """Start following a new track (see the class notes)."""
        self._offset_ms = self._last_ms + 1000
        if first_crop_rgb is not None and self._last_ms >= 0:
            self._detect(first_crop_rgb, self._offset_ms)
            self._offset_ms += 40

    def _detect(self, crop_rgb: np.ndarray, at_ms: int):
        import mediapipe as mp

        at_ms = max(int(at_ms), self._last_ms + 1)
        self._last_ms = at_ms
        image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(crop_rgb))
        return self._landmarker.detect_for_video(image, at_ms)

    def process(self, crop_rgb: np.ndarray, timestamp_ms: int) -> FaceMesh | None:
        """Landmarks of the face in `crop_rgb` (uint8 RGB, square), or None when none is found.

        Args:
            crop_rgb: The crop.
            timestamp_ms: Time within the current track (increasing).
        """
        result = self._detect(crop_rgb, self._offset_ms + int(timestamp_ms))
        if not result.face_landmarks:
            return None
        points = np.array([(p.x, p.y, p.z) for p in result.face_landmarks[0]], np.float32)
        shapes = result.face_blendshapes[0] if result.face_blendshapes else []
        if shapes and not self.blendshape_names:
            self.blendshape_names = [c.category_name for c in shapes]
        blend = (
            np.array([c.score for c in shapes], np.float32) if shapes else np.full(N_BLENDSHAPES, np.nan, np.float32)
        )
        matrix = (
            np.asarray(result.facial_transformation_matrixes[0], np.float32)
            if result.facial_transformation_matrixes
            else np.full((4, 4), np.nan, np.float32)
        )
        return FaceMesh(points, blend, matrix)

    def close(self) -> None:
        if self._landmarker is not None:
            self._landmarker.close()
            self._landmarker = None

    def __enter__(self) -> LandmarkTracker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def pose_from_matrix(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(yaw, pitch, roll) in degrees and the translation, from a facial transformation matrix.

    Yaw turns the head left/right (about the vertical axis), pitch nods, roll tilts; computed as
    R = Ry(yaw) Rx(pitch) Rz(roll) of the matrix's rotation part. Zero is a face looking straight
    into the (crop's) camera.
    """
    matrix = np.asarray(matrix, np.float64)
    if not np.all(np.isfinite(matrix)):
        return np.full(3, np.nan), np.full(3, np.nan)
    r = matrix[:3, :3]
    # Remove any scale the solver left in the rotation part.
    r = r / np.cbrt(max(np.linalg.det(r), 1e-12))
    pitch = np.degrees(np.arcsin(np.clip(-r[1, 2], -1.0, 1.0)))
    yaw = np.degrees(np.arctan2(r[0, 2], r[2, 2]))
    roll = np.degrees(np.arctan2(r[1, 0], r[1, 1]))
    return np.array([yaw, pitch, roll]), matrix[:3, 3].copy()


def landmark_box(landmarks: np.ndarray) -> np.ndarray:
    """The x1, y1, x2, y2 extent of the landmarks, in the same units as they are given."""
    return np.array([landmarks[:, 0].min(), landmarks[:, 1].min(), landmarks[:, 0].max(), landmarks[:, 1].max()])
