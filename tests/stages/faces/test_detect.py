"""Face detectors on real GRID frames."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from tests.stages.faces.conftest import GRID_BOXES, grid_frame
from voxhear.stages.faces.detect import YuNetDetector, make_detector, nms
from voxhear.stages.faces.track import iou_matrix


@pytest.fixture(scope="module")
def yunet(model_store):
    return make_detector("yunet", model_store, 0.5, 0.3, 640)


@pytest.mark.parametrize("name", sorted(GRID_BOXES))
def test_yunet_finds_the_annotated_face(yunet, name):
    found = yunet.detect(grid_frame(name))
    assert len(found) == 1
    iou = iou_matrix(found.boxes, np.array([GRID_BOXES[name]], np.float64))[0, 0]
    # The hand annotation (hairline to chin) is the convention the boxes are calibrated to.
    assert iou > 0.75, iou
    assert found.scores[0] > 0.8
    # Five points inside the box: eyes above the nose above the mouth corners.
    kps = found.kps[0]
    assert kps[0, 1] < kps[2, 1] < kps[3, 1]


def test_yunet_on_onnxruntime_decodes_as_opencv_does(model_store):
    frame = grid_frame("lbax4n")
    path = model_store.resolve("yunet").path
    ours = YuNetDetector(path, score_threshold=0.6, adjust=(0.0, 0.0, 0.0, 0.0)).detect(frame)
    reference = cv2.FaceDetectorYN.create(str(path), "", (frame.shape[1], frame.shape[0]), 0.6, 0.3, 5000)
    _, faces = reference.detect(frame)
    x, y, w, h = faces[0, :4]
    np.testing.assert_allclose(ours.boxes[0], [x, y, x + w, y + h], atol=0.5)
    np.testing.assert_allclose(ours.kps[0].reshape(-1), faces[0, 4:14], atol=0.5)


def test_scrfd_finds_the_face(model_store):
    detector = make_detector("insightface", model_store, 0.5, 0.4, 640)
    found = detector.detect(grid_frame("pwij3p"))
    assert len(found) == 1
    assert iou_matrix(found.boxes, np.array([GRID_BOXES["pwij3p"]], np.float64))[0, 0] > 0.6


def test_no_face_in_a_plain_frame(yunet):
    frame = np.full((360, 640, 3), 127, np.uint8)
    cv2.putText(frame, "no face here", (40, 180), cv2.FONT_HERSHEY_SIMPLEX, 2.0, (20, 20, 20), 4)
    assert len(yunet.detect(frame)) == 0


def test_two_faces_in_one_frame(yunet):
    left, right = grid_frame("bbaf2n"), grid_frame("lwbsza")
    frame = np.concatenate([left, right], axis=1)  # 720x288, two people side by side
    found = yunet.detect(frame)
    assert len(found) == 2
    centres = sorted(((found.boxes[:, 0] + found.boxes[:, 2]) / 2).tolist())
    assert centres[0] < 360 < centres[1]


def test_nms_keeps_the_best_of_overlapping_boxes():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], np.float32)
    scores = np.array([0.8, 0.9, 0.7], np.float32)
    assert nms(boxes, scores, 0.3).tolist() == [1, 2]
