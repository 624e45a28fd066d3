"""Face tracking within one shot: SORT's Kalman box model with ByteTrack's two-round association.

Detections come every `stride` frames. Each track carries a constant-velocity Kalman filter
over (centre x, centre y, width, height); at a detection frame the predicted boxes are matched
to detections by IoU with the Hungarian algorithm, confident detections first and then, for the
tracks still unmatched, the low-score ones (ByteTrack: a face turning away or blurred keeps its
track instead of starting a new one). Only confident detections start tracks. A track not
matched for more than `max_gap` frames ends. Frames between a track's detections get linearly
interpolated boxes; `detected` says which frames had a detection of their own.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of (N, 4) and (M, 4) x1, y1, x2, y2 boxes."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), np.float64)
    a = a[:, None, :].astype(np.float64)
    b = b[None, :, :].astype(np.float64)
    iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = iw * ih
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return inter / np.maximum(area_a + area_b - inter, 1e-9)


def _to_state(box: np.ndarray) -> np.ndarray:
    x1, y1, x2, y2 = box
    return np.array([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], np.float64)


def _to_box(z: np.ndarray) -> np.ndarray:
    cx, cy, w, h = z[:4]
    return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], np.float64)


class BoxKalman:
    """Constant-velocity Kalman filter over (cx, cy, w, h); noise scales with the box size."""

    # Standard deviations as shares of the box height, per frame (ByteTrack's choice of scale).
    POS_STD = 0.05
    VEL_STD = 0.00625

    def __init__(self, box: np.ndarray) -> None:
        z = _to_state(box)
        self.x = np.concatenate([z, np.zeros(4)])
        s = max(z[3], 1.0)
        self.P = np.diag(np.square([2 * self.POS_STD * s] * 4 + [10 * self.VEL_STD * s] * 4))

    def predict(self, dt: float) -> np.ndarray:
        F = np.eye(8)
        F[:4, 4:] = np.eye(4) * dt
        s = max(self.x[3], 1.0)
        q = np.square([self.POS_STD * s] * 4 + [self.VEL_STD * s] * 4) * max(dt, 1e-6)
        self.x = F @ self.x
        self.x[2:4] = np.maximum(self.x[2:4], 1.0)
        self.P = F @ self.P @ F.T + np.diag(q)
        return _to_box(self.x)

    def update(self, box: np.ndarray) -> None:
        z = _to_state(box)
        H = np.hstack([np.eye(4), np.zeros((4, 4))])
        s = max(z[3], 1.0)
        R = np.diag(np.square([self.POS_STD * s] * 4))
        y = z - H @ self.x
        S = H @ self.P @ H.T + R
        K = self.P @ H.T @ np.linalg.inv(S)
        self.x = self.x + K @ y
        self.P = (np.eye(8) - K @ H) @ self.P

    @property
    def box(self) -> np.ndarray:
        return _to_box(self.x)


@dataclass
class Track:
    """One face track: the detection frames it was matched at, with their detections."""

    track_id: int
    frames: list[int] = field(default_factory=list)
    boxes: list[np.ndarray] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    kps: list[np.ndarray] = field(default_factory=list)
    filter: BoxKalman | None = None
    last_frame: int = -1
    # The frame the filter's state describes (ahead of last_frame while the face is unmatched).
    filter_frame: int = -1

    @property
    def start(self) -> int:
        return self.frames[0]

    @property
    def end(self) -> int:
        """Exclusive end frame."""
        return self.frames[-1] + 1

    def __len__(self) -> int:
        return self.end - self.start

    def predict_to(self, frame: int) -> np.ndarray:
        """The filter's box at `frame` (advancing the filter there)."""
        assert self.filter is not None
        box = self.filter.predict(frame - self.filter_frame) if frame > self.filter_frame else self.filter.box
        self.filter_frame = frame
        return box

    def add(self, frame: int, box: np.ndarray, score: float, kps: np.ndarray) -> None:
        if self.filter is None:
            self.filter = BoxKalman(box)
        else:
            if frame > self.filter_frame:
                self.filter.predict(frame - self.filter_frame)
            self.filter.update(box)
        self.filter_frame = frame
        self.frames.append(frame)
        self.boxes.append(np.asarray(box, np.float64))
        self.scores.append(float(score))
        self.kps.append(np.asarray(kps, np.float64))
        self.last_frame = frame


@dataclass
class DenseTrack:
    """A track on every frame of its span.

    Attributes:
        track_id: Id within the shot, in order of first appearance.
        start: First frame (shot-relative).
        boxes: (T, 4) float64 boxes, interpolated between detections.
        detected: (T,) bool, whether the frame had a matched detection.
        scores: (T,) float64 detection score (0 where not detected).
        kps: (T, 5, 2) float64 detector points (NaN where not detected).
    """

    track_id: int
    start: int
    boxes: np.ndarray
    detected: np.ndarray
    scores: np.ndarray
    kps: np.ndarray

    @property
    def end(self) -> int:
        return self.start + len(self.boxes)

    def __len__(self) -> int:
        return len(self.boxes)


class FaceTracker:
    """Online association of per-frame detections into tracks (call `update` in frame order).

    Args:
        iou_threshold: Least IoU between a predicted track box and a detection to match them.
        high_score: Detections at or above this score match first and may start tracks;
            lower ones (above the detector's own threshold) only extend existing tracks.
        max_gap: A track unmatched for more than this many frames ends.
    """

    def __init__(self, iou_threshold: float = 0.3, high_score: float = 0.7, max_gap: int = 12) -> None:
        self.iou_threshold = iou_threshold
        self.high_score = high_score
        self.max_gap = max_gap
        self.active: list[Track] = []
        self.finished: list[Track] = []
        self._next_id = 0

    def update(self, frame: int, boxes: np.ndarray, scores: np.ndarray, kps: np.ndarray | None = None) -> None:
        """Associate the detections of `frame` (frames must come in increasing order)."""
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        scores = np.asarray(scores, np.float64).reshape(-1)
        kps = np.full((len(boxes), 5, 2), np.nan) if kps is None else np.asarray(kps, np.float64)
        ended = [t for t in self.active if frame - t.last_frame > self.max_gap]
        self.finished += ended
        self.active = [t for t in self.active if frame - t.last_frame <= self.max_gap]
        predicted = np.array([t.predict_to(frame) for t in self.active]).reshape(-1, 4)
        waiting = list(range(len(self.active)))
        unused_high: list[int] = []
        rounds = (np.nonzero(scores >= self.high_score)[0], np.nonzero(scores < self.high_score)[0])
        for round_index, round_dets in enumerate(rounds):
            pairs = self._match(predicted[waiting], boxes[round_dets])
            for ti, di in pairs:
                d = int(round_dets[di])
                self.active[waiting[ti]].add(frame, boxes[d], scores[d], kps[d])
            taken_tracks = {waiting[ti] for ti, _ in pairs}
            taken_dets = {int(round_dets[di]) for _, di in pairs}
            waiting = [i for i in waiting if i not in taken_tracks]
            if round_index == 0:
                unused_high = [int(d) for d in round_dets if int(d) not in taken_dets]
        for d in unused_high:
            track = Track(track_id=self._next_id)
            self._next_id += 1
            track.add(frame, boxes[d], scores[d], kps[d])
            self.active.append(track)

    def _match(self, predicted: np.ndarray, boxes: np.ndarray) -> list[tuple[int, int]]:
        if len(predicted) == 0 or len(boxes) == 0:
            return []
        iou = iou_matrix(predicted, boxes)
        rows, cols = linear_sum_assignment(-iou)
        return [(int(r), int(c)) for r, c in zip(rows, cols) if iou[r, c] >= self.iou_threshold]

    def finish(self) -> list[Track]:
        """End every track; returns all tracks in order of their first frame."""
        tracks = self.finished + self.active
        self.finished, self.active = [], []
        return sorted(tracks, key=lambda t: (t.start, t.track_id))


def densify(track: Track) -> DenseTrack:
    """The track on every frame from its first to its last detection (linear interpolation)."""
    frames = np.asarray(track.frames)
    span = np.arange(track.start, track.end)
    boxes = np.stack([np.interp(span, frames, np.asarray(track.boxes)[:, k]) for k in range(4)], axis=1)
    detected = np.zeros(len(span), bool)
    detected[frames - track.start] = True
    scores = np.zeros(len(span))
    scores[frames - track.start] = track.scores
    kps = np.full((len(span), 5, 2), np.nan)
    kps[frames - track.start] = np.asarray(track.kps)
    return DenseTrack(
        track_id=track.track_id, start=track.start, boxes=boxes, detected=detected, scores=scores, kps=kps
    )


def split_by_length(tracks: list[Track], min_frames: int) -> tuple[list[Track], list[Track]]:
    """(kept, too_short): a track spanning fewer than `min_frames` frames is dropped."""
    kept = [t for t in tracks if len(t) >= min_frames]
    short = [t for t in tracks if len(t) < min_frames]
    return kept, short


def smooth_boxes(boxes: np.ndarray, sigma_frames: float) -> np.ndarray:
    """Gaussian-smoothed centres and sizes (edge frames repeat), for a steady crop."""
    if sigma_frames <= 0 or len(boxes) < 2:
        return boxes.astype(np.float64, copy=True)
    from scipy.ndimage import gaussian_filter1d

    cx = (boxes[:, 0] + boxes[:, 2]) / 2
    cy = (boxes[:, 1] + boxes[:, 3]) / 2
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    cx, cy, w, h = (gaussian_filter1d(v, sigma_frames, mode="nearest") for v in (cx, cy, w, h))
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)


def square_crop_boxes(boxes: np.ndarray, scale: float, sigma_frames: float) -> np.ndarray:
    """Square crop boxes centred on the smoothed face boxes, side = scale x the larger face side.

    The side is smoothed with the centre, so a crop neither jitters nor breathes with the
    detector's frame-to-frame noise.
    """
    smooth = smooth_boxes(boxes, sigma_frames)
    cx = (smooth[:, 0] + smooth[:, 2]) / 2
    cy = (smooth[:, 1] + smooth[:, 3]) / 2
    side = np.maximum(smooth[:, 2] - smooth[:, 0], smooth[:, 3] - smooth[:, 1]) * scale
    return np.stack([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2], axis=1)
