"""The face stage: one shot in, one row per face track out.

Two passes over the shot's video. The first detects faces every `detect_every` frames and links
them into tracks (`track.py`). Tracks too short or with faces too small are dropped with a
reason before anything expensive runs on them. The second pass decodes the shot again and, for
every kept track on every frame of its span, cuts the stabilized square crop, writes it into the
track's H.264 video, runs the track's FaceLandmarker on it and, on a few well-detected frames,
computes the identity embedding. Decoding twice costs under 2 ms of CPU per 360p frame and keeps
memory flat however long the shot is: the face meshes (6 KB a frame) go to disk as they come and
into the track's `.npz` from there; what stays in memory per frame of a live track is its box,
detector points and pose (under 200 bytes).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import tempfile
import threading
import time
import zipfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import soundfile as sf

from voxhear.pipeline.io import atomic_path
from voxhear.pipeline.records import STATUS_FILTERED, FaceTrackRecord, ShotRecord, sample_key
from voxhear.pipeline.stage import Bound, FilteredError, InputError, RejectReason, Stage
from voxhear.stages.faces.config import FaceConfig
from voxhear.stages.faces.crop import CropVideoWriter, blur_score, crop_square
from voxhear.stages.faces.detect import make_detector
from voxhear.stages.faces.identity import make_embedder
from voxhear.stages.faces.landmarks import (
    LANDMARK_INPUT,
    N_BLENDSHAPES,
    N_LANDMARKS,
    LandmarkTracker,
    landmark_box,
    pose_from_matrix,
)
from voxhear.stages.faces.track import DenseTrack, FaceTracker, densify, iou_matrix, square_crop_boxes

# Blur is measured on every this many frames of a track (the Laplacian of a 256 px crop).
BLUR_EVERY = 5


class _Timer:
    """Wall and CPU seconds per step (CPU of the process and its waited-for children: ffmpeg)."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = defaultdict(float)
        self.cpu: dict[str, float] = defaultdict(float)

    @staticmethod
    def now() -> tuple[float, float]:
        t = os.times()
        return time.perf_counter(), t.user + t.system + t.children_user + t.children_system

    @contextlib.contextmanager
    def __call__(self, step: str):
        wall0, cpu0 = self.now()
        try:
            yield
        finally:
            wall1, cpu1 = self.now()
            self.wall[step] += wall1 - wall0
            self.cpu[step] += cpu1 - cpu0

    def per_frame(self, frames: int) -> tuple[dict[str, float], dict[str, float]]:
        def scale(values: dict[str, float]) -> dict[str, float]:
            out = {k: round(1000.0 * v / max(frames, 1), 4) for k, v in values.items()}
            out["total"] = round(sum(out.values()), 4)
            return out

        return scale(self.wall), scale(self.cpu)


class _RowSpill:
    """Rows of one per-frame array written to a `.npy` file as they come, front to back; rows never
    given are NaN. The face meshes of a long track so never sit in memory whole."""

    def __init__(self, path: Path, n_rows: int, row_shape: tuple[int, ...]) -> None:
        self.path = path
        self.n_rows = n_rows
        self.row_shape = row_shape
        self.rows = 0
        self._nan = np.full(row_shape, np.nan, np.float32).tobytes()
        self._handle = open(path, "wb")  # closed by finish() or close()
        header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)), "fortran_order": False}
        np.lib.format.write_array_header_1_0(self._handle, {**header, "shape": (n_rows, *row_shape)})

    def put(self, k: int, row: np.ndarray) -> None:
        """Row `k` (after every row written so far); the rows skipped over are NaN."""
        value = np.empty(self.row_shape, np.float32)
        value[...] = row
        self._pad(k - self.rows)
        self._handle.write(value.tobytes())
        self.rows = k + 1

    def finish(self) -> None:
        if not self._handle.closed:
            self._pad(self.n_rows - self.rows)
            self.rows = self.n_rows
            self._handle.close()

    def close(self) -> None:
        self._handle.close()

    def _pad(self, count: int) -> None:
        for _ in range(count):  # a row at a time: a track without meshes is no large block either
            self._handle.write(self._nan)


@dataclass
class _Live:
    """A kept track while the second pass fills it: its face meshes go to disk row by row
    (`spills`), the per-frame facts kept from them stay here."""

    index: int
    dense: DenseTrack
    crop_boxes: np.ndarray
    key: str
    embed_frames: set[int]
    has: np.ndarray
    pose: np.ndarray
    translation: np.ndarray
    confidence: np.ndarray
    spills: dict[str, _RowSpill] = field(default_factory=dict)
    writer: CropVideoWriter | None = None
    blur: list[float] = field(default_factory=list)
    embeddings: list[np.ndarray] = field(default_factory=list)
    blendshape_names: list[str] = field(default_factory=list)


class FaceStage(Stage[ShotRecord, FaceTrackRecord]):
    name = "faces"
    input_type = ShotRecord
    output_type = FaceTrackRecord
    config_class = FaceConfig
    requires = ("shot_media",)
    reasons = (
        RejectReason(
            "no_face",
            ("faces.detector", "faces.score_threshold", "faces.new_track_score"),
            "no face detected in the shot",
        ),
        RejectReason(
            "track_too_short",
            ("faces.min_track_s",),
            "face track shorter than the bound",
            (Bound("faces.min_track_s", "clips", "clip_s", "min"),),
        ),
        RejectReason(
            "face_too_small",
            ("faces.min_face_px",),
            "median face height below the bound",
            (Bound("faces.min_face_px", "clips", "face_height_px", "min"),),
        ),
        RejectReason(
            "profile_view",
            ("faces.max_median_abs_yaw",),
            "median |yaw| above the bound",
            (Bound("faces.max_median_abs_yaw", "clips", "yaw_deg", "abs_max"),),
        ),
        RejectReason(
            "landmarks_lost",
            ("faces.min_landmark_fraction",),
            "face mesh on too few frames",
            (Bound("faces.min_landmark_fraction", "clips", "landmark_fraction", "min"),),
        ),
        RejectReason("no_embedding", ("faces.embedder",), "no frame gave an identity embedding"),
    )
    uses_models = True

    config: FaceConfig

    @classmethod
    def models(cls, config: FaceConfig) -> list[str]:
        detector = {"yunet": "yunet", "insightface": "insightface-scrfd"}[config.detector]
        embedder = (
            ["dlib-shape-predictor-5", "dlib-face-recognition"]
            if config.embedder == "dlib"
            else ["insightface-arcface"]
        )
        return [detector, "mediapipe-face-landmarker", *embedder]

    def setup(self) -> None:
        cfg = self.config
        store = self.context.model_store
        cv2.setNumThreads(1)
        self.detector = make_detector(
            cfg.detector,
            store,
            cfg.score_threshold,
            cfg.nms_threshold,
            cfg.detect_max_side,
            threads=cfg.threads,
            use_gpu=cfg.gpus > 0,
        )
        self.landmark_model = store.resolve("mediapipe-face-landmarker").path
        self.embedder = make_embedder(cfg.embedder, store)
        # Idle landmarkers, reused by later tracks. They must be closed before interpreter exit
        # shuts down the thread pools mediapipe closes them through: threading's exit hooks run
        # before concurrent.futures' (registered earlier, called in reverse order), atexit's after.
        self._idle_markers: list[LandmarkTracker] = []
        import concurrent.futures.thread  # noqa: F401 - its exit hook must be registered before ours

        register = getattr(threading, "_register_atexit", atexit.register)
        register(self._close_markers)

    def _close_markers(self) -> None:
        while self._idle_markers:
            self._idle_markers.pop().close()

    def _acquire_marker(self) -> LandmarkTracker:
        return self._idle_markers.pop() if self._idle_markers else LandmarkTracker(self.landmark_model)

    # ------------------------------------------------------------------------------------------

    def process(self, row: ShotRecord) -> list[FaceTrackRecord]:
        cfg = self.config
        fps = row.norm_fps or 25.0
        timer = _Timer()
        n_frames, tracks = self._detect_and_track(row, fps, timer)
        if not tracks:
            raise FilteredError(
                "no_face",
                f"no face found in the shot's {n_frames} frames "
                f"(detector {cfg.detector}, every {cfg.detect_every} frames)",
            )
        min_frames = max(1, round(cfg.min_track_s * fps))
        out_dir = self.context.source_work_dir(row.source_id) / "faces"
        rows: list[FaceTrackRecord] = []
        live: list[_Live] = []
        for index, track in enumerate(tracks):
            dense = densify(track)
            record = self._track_record(row, index, len(tracks), dense, fps)
            if len(dense) < min_frames:
                record.mark(
                    STATUS_FILTERED,
                    self.name,
                    "track_too_short",
                    message=f"track of {len(dense)} frames < faces.min_track_s={cfg.min_track_s}s",
                )
            elif record.face_height_px < cfg.min_face_px:
                record.mark(
                    STATUS_FILTERED,
                    self.name,
                    "face_too_small",
                    message=f"median face height {record.face_height_px:.1f}px < faces.min_face_px={cfg.min_face_px}",
                )
            else:
                live.append(self._live(index, dense, record.key, fps))
            rows.append(record)
        by_index = {t.index: t for t in live}
        if live:
            out_dir.mkdir(parents=True, exist_ok=True)
            # The meshes' rows wait on disk (removed, whatever happens) until the .npz takes them.
            with tempfile.TemporaryDirectory(dir=out_dir, prefix=".meshes-") as spill_dir:
                self._second_pass(row, live, n_frames, fps, out_dir, Path(spill_dir), timer)
                for record in rows:
                    if record.track_index in by_index:
                        with timer("write"):
                            self._finish_track(row, record, by_index[record.track_index], out_dir)
        _link_co_visible(rows)
        wall, cpu = timer.per_frame(n_frames)
        for record in rows:
            record.ms_per_frame, record.cpu_ms_per_frame = dict(wall), dict(cpu)
        return rows

    # ------------------------------------------------------------------------------------------

    def _detect_and_track(self, row: ShotRecord, fps: float, timer: _Timer):
        cfg = self.config
        expected = row.end_frame - row.start_frame
        every = cfg.detect_every
        tracker = FaceTracker(
            iou_threshold=cfg.track_iou, high_score=cfg.new_track_score, max_gap=max(every, round(cfg.max_gap_s * fps))
        )
        capture = cv2.VideoCapture(row.segment_video_uri)
        if not capture.isOpened():
            raise InputError("decode_failed", f"cannot open the shot video {row.segment_video_uri}")
        n = 0
        last_done = -1
        try:
            while n < expected:
                # The shot's last frame is detected too, so that no track ends short of it.
                wanted = n % every == 0 or n == expected - 1
                with timer("decode"):
                    if not capture.grab():
                        break
                    ok, frame = capture.retrieve() if wanted else (False, None)
                if ok and frame is not None:
                    with timer("detect"):
                        found = self.detector.detect(frame)
                    with timer("track"):
                        tracker.update(n, found.boxes, found.scores, found.kps)
                    last_done = n
                n += 1
        finally:
            capture.release()
        if n == 0:
            raise InputError("decode_failed", f"no frame could be decoded from {row.segment_video_uri}")
        if last_done != n - 1:
            # Fewer frames than the shot declares: detect on the true last frame as well.
            frame = _read_frame(row.segment_video_uri, n - 1)
            if frame is not None:
                found = self.detector.detect(frame)
                tracker.update(n - 1, found.boxes, found.scores, found.kps)
        return n, tracker.finish()

    def _track_record(
        self, row: ShotRecord, index: int, n_tracks: int, dense: DenseTrack, fps: float
    ) -> FaceTrackRecord:
        start = row.start_frame + dense.start
        end = row.start_frame + dense.end
        # The facts known before landmarks go on every track row, dropped ones included.
        sizes = dense.boxes[:, 2:] - dense.boxes[:, :2]
        return FaceTrackRecord.from_parent(
            row,
            track_index=index,
            n_tracks=n_tracks,
            track_start_frame=start,
            track_end_frame=end,
            track_start_s=start / fps,
            track_end_s=end / fps,
            detector=self.config.detector,
            crop_size=self.config.crop_size,
            embedder=self.config.embedder,
            key=sample_key(row.source_id, round(start / fps * 1000), track=f"face{index}"),
            face_width_px=float(np.median(sizes[:, 0])),
            face_height_px=float(np.median(sizes[:, 1])),
            det_score=float(dense.scores[dense.detected].mean()) if dense.detected.any() else 0.0,
            detected_fraction=_detected_fraction(dense, self.config.detect_every),
        )

    def _live(self, index: int, dense: DenseTrack, key: str, fps: float) -> _Live:
        cfg = self.config
        crop_boxes = square_crop_boxes(dense.boxes, cfg.crop_scale, cfg.crop_smooth_s * fps)
        t = len(dense)
        return _Live(
            index=index,
            dense=dense,
            crop_boxes=crop_boxes,
            key=key,
            embed_frames=_embed_frames(dense, cfg.embed_samples),
            has=np.zeros(t, bool),
            pose=np.full((t, 3), np.nan, np.float32),
            translation=np.full((t, 3), np.nan, np.float32),
            confidence=np.zeros(t, np.float32),
        )

    def _second_pass(
        self,
        row: ShotRecord,
        live: list[_Live],
        n_frames: int,
        fps: float,
        out_dir: Path,
        spill_dir: Path,
        timer: _Timer,
    ) -> None:
        cfg = self.config
        capture = cv2.VideoCapture(row.segment_video_uri)
        with contextlib.ExitStack() as stack:
            stack.callback(capture.release)
            opened: list[tuple[_Live, CropVideoWriter, LandmarkTracker]] = []
            for track in live:
                for name, shape in _MESH_ARRAYS.items():
                    spill = track.spills[name] = _RowSpill(
                        spill_dir / f"{track.key}.{name}.npy", len(track.dense), shape
                    )
                    stack.callback(spill.close)
                tmp = stack.enter_context(atomic_path(out_dir / f"{track.key}.mp4"))
                writer = track.writer = CropVideoWriter(
                    tmp, cfg.crop_size, fps, cfg.crop_crf, cfg.crop_preset, round(cfg.crop_keyframe_s * fps)
                )
                marker = self._acquire_marker()
                stack.callback(self._idle_markers.append, marker)
                stack.callback(_abort_writer, track)
                opened.append((track, writer, marker))
            last = max(t.dense.end for t in live)
            for i in range(min(n_frames, last)):
                with timer("decode"):
                    ok, frame = capture.read()
                if not ok:
                    break
                rgb = None
                for track, writer, marker in opened:
                    k = i - track.dense.start
                    if k < 0 or k >= len(track.dense):
                        continue
                    with timer("crop"):
                        crop = crop_square(frame, track.crop_boxes[k], cfg.crop_size)
                        writer.write(crop)
                        small = cv2.resize(crop, (LANDMARK_INPUT, LANDMARK_INPUT), interpolation=cv2.INTER_AREA)
                        if k % BLUR_EVERY == 0:
                            track.blur.append(blur_score(cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)))
                    with timer("landmarks"):
                        small_rgb = cv2.cvtColor(small, cv2.COLOR_BGR2RGB)
                        if k == 0:
                            marker.begin(small_rgb)
                        mesh = marker.process(small_rgb, round(k * 1000 / fps))
                    if mesh is not None:
                        with timer("write"):
                            _keep_mesh(track, k, mesh)
                    if k in track.embed_frames:
                        with timer("identity"):
                            rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB) if rgb is None else rgb
                            track.embeddings.append(self.embedder.embed(rgb, track.dense.boxes[k], track.dense.kps[k]))
            for track, writer, marker in opened:
                track.blendshape_names = marker.blendshape_names
                for spill in track.spills.values():
                    spill.finish()
                track.writer = None
                with timer("crop"):  # the encoder finishing its last frames
                    writer.close()

    def _finish_track(self, row: ShotRecord, record: FaceTrackRecord, track: _Live, out_dir: Path) -> None:
        cfg = self.config
        dense = track.dense
        has, pose, translation, confidence = track.has, track.pose, track.translation, track.confidence
        record.landmark_fraction = float(has.mean())
        record.landmark_confidence = float(confidence.mean())
        record.blur_var = float(np.median(track.blur)) if track.blur else 0.0
        if has.any():
            record.yaw_deg, record.pitch_deg, record.roll_deg = (float(v) for v in np.nanmedian(pose, axis=0))
            record.abs_yaw_p90_deg = float(np.nanpercentile(np.abs(pose[:, 0]), 90))
            abs_yaw = float(np.nanmedian(np.abs(pose[:, 0])))
        else:
            record.yaw_deg = record.pitch_deg = record.roll_deg = record.abs_yaw_p90_deg = float("nan")
            abs_yaw = float("nan")
        crop_path = out_dir / f"{track.key}.mp4"
        if record.landmark_fraction < cfg.min_landmark_fraction:
            record.mark(
                STATUS_FILTERED,
                self.name,
                "landmarks_lost",
                message=f"landmarks on {record.landmark_fraction:.0%} of frames "
                f"< faces.min_landmark_fraction={cfg.min_landmark_fraction}",
            )
        elif abs_yaw > cfg.max_median_abs_yaw:
            record.mark(
                STATUS_FILTERED,
                self.name,
                "profile_view",
                message=f"median |yaw| {abs_yaw:.1f} deg > faces.max_median_abs_yaw={cfg.max_median_abs_yaw}",
            )
        elif not track.embeddings:
            record.mark(STATUS_FILTERED, self.name, "no_embedding", message="no frame gave an identity embedding")
        if record.status == STATUS_FILTERED:
            crop_path.unlink(missing_ok=True)
            return
        embedding = np.mean(track.embeddings, axis=0)
        if self.config.embedder == "arcface":
            embedding = embedding / max(float(np.linalg.norm(embedding)), 1e-9)
        record.embedding = [float(v) for v in embedding]
        frames_path = out_dir / f"{track.key}.npz"
        with atomic_path(frames_path) as tmp, open(tmp, "wb") as handle:
            _save_npz(
                handle,
                frame=np.arange(record.track_start_frame, record.track_end_frame, dtype=np.int32),
                box=dense.boxes.astype(np.float32),
                detected=dense.detected,
                det_score=dense.scores.astype(np.float32),
                det_kps=dense.kps.astype(np.float32),
                crop_box=track.crop_boxes.astype(np.float32),
                has_landmarks=has,
                landmarks=track.spills["landmarks"].path,
                blendshapes=track.spills["blendshapes"].path,
                blendshape_names=np.array(track.blendshape_names or [""] * N_BLENDSHAPES),
                transform=track.spills["transform"].path,
                rotation_deg=pose,
                translation=translation,
                confidence=confidence,
                embedding=embedding.astype(np.float32),
                embeddings=np.stack(track.embeddings).astype(np.float32),
            )
        audio_path = out_dir / f"{track.key}.flac"
        _cut_audio(row.audio_uri, record.track_start_s, record.track_end_s, audio_path)
        record.frames_uri, record.crop_video_uri, record.track_audio_uri = (
            str(frames_path),
            str(crop_path),
            str(audio_path),
        )


# The per-frame face-mesh arrays that go to disk as the second pass makes them: row shapes.
_MESH_ARRAYS: dict[str, tuple[int, ...]] = {
    "landmarks": (N_LANDMARKS, 3),
    "blendshapes": (N_BLENDSHAPES,),
    "transform": (4, 4),
}


def _keep_mesh(track: _Live, k: int, mesh) -> None:
    """Frame `k`'s face mesh: its arrays to disk, its pose and fit kept."""
    landmarks = np.empty((N_LANDMARKS, 3), np.float32)
    landmarks[...] = mesh.landmarks
    matrix = np.empty((4, 4), np.float32)
    matrix[...] = mesh.matrix
    track.spills["landmarks"].put(k, landmarks)
    track.spills["blendshapes"].put(k, mesh.blendshapes)
    track.spills["transform"].put(k, matrix)
    if not np.all(np.isfinite(landmarks[:, 0])):
        return
    track.has[k] = True
    track.pose[k], track.translation[k] = pose_from_matrix(matrix)
    # Confidence: how well the landmarks cover the tracked face (IoU of their extent, mapped back
    # to frame pixels, with the face box); 0 where none were found.
    x1, y1, x2, y2 = track.crop_boxes[k]
    lb = landmark_box(landmarks) * (x2 - x1) + np.array([x1, y1, x1, y1])
    track.confidence[k] = float(iou_matrix(lb[None], track.dense.boxes[k][None])[0, 0])


def _save_npz(handle, **arrays: np.ndarray | Path) -> None:
    """`np.savez_compressed(handle, **arrays)`, where an array given as the path of a `.npy` file is
    copied into the archive from disk, a piece at a time."""
    with zipfile.ZipFile(handle, mode="w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as archive:
        for name, value in arrays.items():
            if isinstance(value, Path):
                archive.write(value, f"{name}.npy")
                continue
            with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(value), allow_pickle=False)


def _link_co_visible(rows: list[FaceTrackRecord]) -> None:
    """Give every track with media the frames files of the shot's other tracks that overlap it in time."""
    with_media = [r for r in rows if r.frames_uri]
    for record in with_media:
        record.co_visible_frames_uris = [
            other.frames_uri
            for other in with_media
            if other is not record
            and other.track_start_frame < record.track_end_frame
            and record.track_start_frame < other.track_end_frame
        ]


def _embed_frames(dense: DenseTrack, samples: int) -> set[int]:
    """Track-relative frames for the embedding: the best-scored detection in each of `samples` parts."""
    detected = np.nonzero(dense.detected & np.all(np.isfinite(dense.kps[:, :, 0]), axis=1))[0]
    if detected.size == 0:
        detected = np.nonzero(dense.detected)[0]
    chosen = set()
    for part in np.array_split(detected, min(samples, detected.size)):
        if part.size:
            chosen.add(int(part[np.argmax(dense.scores[part])]))
    return chosen


def _detected_fraction(dense: DenseTrack, every: int) -> float:
    """Share of the detector runs inside the track's span that found this face."""
    runs = np.zeros(len(dense), bool)
    runs[(np.arange(dense.start, dense.end) % every) == 0] = True
    runs[[0, -1]] = True
    return float((dense.detected & runs).sum() / max(runs.sum(), 1))


def _abort_writer(track: _Live) -> None:
    if track.writer is not None:
        track.writer.abort()
        track.writer = None


def _read_frame(path: str, index: int) -> np.ndarray | None:
    capture = cv2.VideoCapture(path)
    try:
        frame = None
        for _ in range(index + 1):
            ok, frame = capture.read()
            if not ok:
                return None
        return frame
    finally:
        capture.release()


def _cut_audio(audio_uri: str, start_s: float, end_s: float, out: Path) -> None:
    """The track's span of the source audio as 16-bit FLAC (as the shot media stage cuts shots)."""
    info = sf.info(audio_uri)
    start, stop = round(start_s * info.samplerate), min(round(end_s * info.samplerate), info.frames)
    audio, rate = sf.read(audio_uri, start=start, stop=stop, dtype="int16")
    with atomic_path(out) as tmp:
        sf.write(tmp, audio, rate, format="FLAC", subtype="PCM_16")
