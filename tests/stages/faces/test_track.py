"""Tracker units on synthetic boxes."""

from __future__ import annotations

import numpy as np

from voxhear.stages.faces.track import FaceTracker, densify, split_by_length, square_crop_boxes


def _box(x: float, y: float, size: float = 50.0) -> np.ndarray:
    return np.array([x, y, x + size, y + size * 1.3])


def test_gap_is_bridged_and_interpolated():
    tracker = FaceTracker(max_gap=8)
    for frame in range(0, 31):
        if 10 <= frame <= 14:  # the detector misses the face for five frames
            tracker.update(frame, np.zeros((0, 4)), np.zeros(0))
        else:
            tracker.update(frame, [_box(100 + 2 * frame, 50)], [0.9])
    tracks = tracker.finish()
    assert len(tracks) == 1
    dense = densify(tracks[0])
    assert (dense.start, dense.end) == (0, 31)
    assert not dense.detected[10:15].any() and dense.detected[:10].all() and dense.detected[15:].all()
    np.testing.assert_allclose(dense.boxes[12], _box(124, 50), atol=1e-6)


def test_long_gap_ends_the_track():
    tracker = FaceTracker(max_gap=5)
    for frame in list(range(0, 10)) + list(range(20, 30)):
        tracker.update(frame, [_box(100, 50)], [0.9])
    tracks = tracker.finish()
    assert [(t.start, t.end) for t in tracks] == [(0, 10), (20, 30)]


def test_short_tracks_are_dropped():
    tracker = FaceTracker(max_gap=2)
    for frame in range(40):
        boxes = [_box(100, 50)] + ([_box(300, 60)] if 5 <= frame < 12 else [])
        tracker.update(frame, boxes, [0.9] * len(boxes))
    kept, short = split_by_length(tracker.finish(), min_frames=25)
    assert [(t.start, t.end) for t in kept] == [(0, 40)]
    assert [(t.start, t.end) for t in short] == [(5, 12)]


def test_two_faces_crossing_keep_their_tracks():
    tracker = FaceTracker(max_gap=6)
    for frame in range(0, 61, 3):  # detections every third frame
        a = _box(10 + 3 * frame, 50)  # moving right
        b = _box(200 - 3 * frame, 58)  # moving left, passing in front of a
        tracker.update(frame, [a, b], [0.9, 0.9])
    tracks = tracker.finish()
    assert len(tracks) == 2
    for track in tracks:
        xs = np.asarray(track.boxes)[:, 0]
        # Each track moves monotonically: it never jumped to the other face.
        assert np.all(np.diff(xs) > 0) or np.all(np.diff(xs) < 0)


def test_low_score_detections_extend_but_do_not_start_tracks():
    tracker = FaceTracker(high_score=0.7, max_gap=3)
    for frame in range(20):
        score = 0.9 if frame < 5 else 0.4  # the face turns away: the detector grows unsure
        boxes = [_box(100, 50), _box(400, 50)]
        tracker.update(frame, boxes, [score, 0.4])
    tracks = tracker.finish()
    assert [(t.start, t.end) for t in tracks] == [(0, 20)]


def test_crop_boxes_are_square_steady_and_scaled():
    rng = np.random.default_rng(0)
    boxes = np.array([_box(100, 80) for _ in range(100)]) + rng.normal(0, 3, (100, 4))
    crops = square_crop_boxes(boxes, scale=1.6, sigma_frames=5)
    sides = crops[:, 2] - crops[:, 0]
    np.testing.assert_allclose(sides, crops[:, 3] - crops[:, 1])
    assert abs(np.median(sides) - 65 * 1.6) < 5
    raw_jitter = np.abs(np.diff((boxes[:, 0] + boxes[:, 2]) / 2)).mean()
    crop_jitter = np.abs(np.diff((crops[:, 0] + crops[:, 2]) / 2)).mean()
    assert crop_jitter < raw_jitter / 4
