"""FaceLandmarker on a real face crop, and the pose maths."""

from __future__ import annotations

import numpy as np
import pytest

from tests.stages.faces.conftest import GRID_BOXES, grid_frames
from voxhear.stages.faces.crop import crop_square
from voxhear.stages.faces.landmarks import (LANDMARK_INPUT, N_BLENDSHAPES, N_LANDMARKS, LandmarkTracker,
                                            pose_from_matrix)


def _crops(name: str, count: int) -> list[np.ndarray]:
    x1, y1, x2, y2 = GRID_BOXES[name]
    cx, cy, side = (x1 + x2) / 2, (y1 + y2) / 2, 1.6 * max(x2 - x1, y2 - y1)
    box = np.array([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2])
    return [crop_square(f, box, LANDMARK_INPUT)[:, :, ::-1] for f in grid_frames(name, count)]


def test_landmarks_blendshapes_and_pose_on_a_real_face(model_store):
    path = model_store.resolve("mediapipe-face-landmarker").path
    with LandmarkTracker(path) as marker:
        marker.begin()
        meshes = [marker.process(crop, 40 * i) for i, crop in enumerate(_crops("bbaf2n", 10))]
        names = marker.blendshape_names
    assert all(m is not None for m in meshes)
    mesh = meshes[-1]
    assert mesh.landmarks.shape == (N_LANDMARKS, 3)
    assert mesh.blendshapes.shape == (N_BLENDSHAPES,)
    assert len(names) == N_BLENDSHAPES and "jawOpen" in names
    # The face fills the middle of the crop (crop side = 1.6 x face).
    xy = mesh.landmarks[:, :2]
    assert 0.1 < xy.min() and xy.max() < 0.9
    angles, translation = pose_from_matrix(mesh.matrix)
    assert np.all(np.abs(angles) < 20), angles  # GRID speakers face the camera
    assert translation[2] < 0  # the face is in front of the camera (MediaPipe looks down -z)


def test_a_reused_landmarker_follows_the_next_face(model_store):
    path = model_store.resolve("mediapipe-face-landmarker").path
    first, second = _crops("bbaf2n", 5), _crops("lwbsza", 3)
    with LandmarkTracker(path) as fresh:
        fresh.begin()
        want = fresh.process(second[0], 0).landmarks
    with LandmarkTracker(path) as reused:
        reused.begin()
        for i, crop in enumerate(first):
            reused.process(crop, 40 * i)
        reused.begin(second[0])
        got = reused.process(second[0], 0).landmarks
    assert np.abs(got[:, :2] - want[:, :2]).mean() * LANDMARK_INPUT < 1.0  # pixels of the crop


def test_no_landmarks_on_a_blank_crop(model_store):
    with LandmarkTracker(model_store.resolve("mediapipe-face-landmarker").path) as marker:
        assert marker.process(np.full((256, 256, 3), 90, np.uint8), 0) is None


@pytest.mark.parametrize("yaw,pitch,roll", [(0, 0, 0), (30, 0, 0), (0, -20, 0), (0, 0, 15), (25, 10, -5)])
def test_pose_from_matrix_inverts_the_rotation(yaw, pitch, roll):
    y, p, r = np.radians([yaw, pitch, roll])
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    matrix = np.eye(4)
    matrix[:3, :3] = ry @ rx @ rz
    matrix[:3, 3] = [1.0, -2.0, -30.0]
    angles, translation = pose_from_matrix(matrix)
    np.testing.assert_allclose(angles, [yaw, pitch, roll], atol=1e-6)
    np.testing.assert_allclose(translation, [1.0, -2.0, -30.0])
