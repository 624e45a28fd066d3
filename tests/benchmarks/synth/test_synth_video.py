"""The pictures: real cuts at the truth boundaries, live listeners, boxes on the faces."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest

from voxhear.benchmarks.synth.options import default_media_dir
from voxhear.benchmarks.synth.people import MediaLibrary
from voxhear.benchmarks.synth.render import make_backdrop, make_cutout, render_frame
from voxhear.benchmarks.synth.script import plan_video
from voxhear.benchmarks.synth.sources import BACKGROUND_FILES, SPEECH_FILES
from voxhear.benchmarks.synth.truth import face_boxes

from .synth_helpers import SMALL, needs_media, small_options

TRUTH = "truth/synth-0000"


def _decode(path: Path, width: int, height: int, pix_fmt: str = "gray") -> np.ndarray:
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", pix_fmt, "-"],
                         capture_output=True, check=True).stdout
    channels = 3 if pix_fmt == "bgr24" else 1
    return np.frombuffer(raw, np.uint8).reshape(-1, height, width, channels)


def _plan(tmp_path: Path, **changes):
    options = small_options(tmp_path, **changes)
    return plan_video(options, 0, MediaLibrary(default_media_dir(), SPEECH_FILES, BACKGROUND_FILES))


@needs_media
def test_mp4_is_h264_aac_with_the_planned_frames(composed: Path) -> None:
    probe = json.loads(subprocess.run(
        ["ffprobe", "-v", "error", "-show_streams", "-of", "json", str(composed / "videos/synth-0000.mp4")],
        capture_output=True, check=True).stdout)
    codecs = {s["codec_type"]: s for s in probe["streams"]}
    assert codecs["video"]["codec_name"] == "h264" and codecs["video"]["pix_fmt"] == "yuv420p"
    assert (codecs["video"]["width"], codecs["video"]["height"]) == (SMALL["width"], SMALL["height"])
    assert codecs["audio"]["codec_name"] == "aac"
    frames = _decode(composed / "videos/synth-0000.mp4", SMALL["width"], SMALL["height"])
    assert len(frames) == round(SMALL["duration_s"] * 25)


@needs_media
def test_truth_boundaries_are_the_visual_cuts(composed: Path) -> None:
    frames = _decode(composed / "videos/synth-0000.mp4", SMALL["width"], SMALL["height"]).astype(np.float32)
    diff = np.abs(np.diff(frames, axis=0)).mean(axis=(1, 2, 3))  # diff[k] is between frames k and k+1
    shots = pq.read_table(composed / TRUTH / "shots.parquet").to_pylist()
    assert len(shots) == SMALL["shots"] and shots[0]["start_frame"] == 0
    assert shots[-1]["end_frame"] == len(frames)
    assert all(a["end_frame"] == b["start_frame"] for a, b in zip(shots, shots[1:]))
    assert all(a["kind"] != b["kind"] for a, b in zip(shots, shots[1:]))
    cuts = [s["start_frame"] - 1 for s in shots[1:]]
    others = np.delete(diff, cuts)
    # Every true cut is a spike far above anything inside a shot.
    assert diff[cuts].min() > 5 * others.max(), (diff[cuts], others.max())


@needs_media
def test_face_boxes_inside_canvas_and_on_the_faces(composed: Path, tmp_path: Path) -> None:
    faces = pq.read_table(composed / TRUTH / "faces.parquet").to_pylist()
    shots = pq.read_table(composed / TRUTH / "shots.parquet").to_pylist()
    w, h = SMALL["width"], SMALL["height"]
    assert len(faces) == sum((s["end_frame"] - s["start_frame"]) * len(s["people"]) for s in shots)
    for f in faces:
        assert 0 <= f["x1"] < f["x2"] <= w and 0 <= f["y1"] < f["y2"] <= h, f
    assert _boxes_match_pictures(_plan(tmp_path), faces[:: max(1, len(faces) // 25)]) >= 10


@needs_media
def test_two_shot_faces_fit_side_by_side_on_a_portrait_canvas(tmp_path: Path) -> None:
    # Faces sized by the height alone would overlap on a tall, narrow canvas.
    plan = _plan(tmp_path, width=360, height=640, two_shot_prob=1.0, shots=3)
    faces = face_boxes(plan)
    by_frame: dict[int, list[dict]] = {}
    for f in faces:
        by_frame.setdefault(f["frame"], []).append(f)
    pairs = [sorted(fs, key=lambda f: f["x1"]) for fs in by_frame.values() if len(fs) == 2]
    assert len(pairs) > 50
    assert all(left["x2"] < right["x1"] for left, right in pairs)
    assert _boxes_match_pictures(plan, [f for f in faces if f["frame"] % 7 == 0]) >= 10


def _boxes_match_pictures(plan, faces: list[dict]) -> int:
    """Cut each box out of the rendered frame, scale it back: it must be the annotated source face."""
    cutouts = {p: make_cutout(c) for p, c in plan.clips.items()}
    backdrops = {k: make_backdrop(s, plan.width, plan.height) for k, s in plan.backdrop_seeds.items()}
    checked = 0
    for f in faces:
        frame = render_frame(plan, f["frame"], cutouts, backdrops).astype(np.float32)
        clip = plan.clips[f["person_id"]]
        sx1, sy1, sx2, sy2 = (int(v) for v in clip.face_box)
        source = clip.frames[f["source_frame"], sy1:sy2, sx1:sx2].astype(np.float32)
        x1, y1, x2, y2 = (int(round(f[k])) for k in ("x1", "y1", "x2", "y2"))
        crop = cv2.resize(frame[y1:y2, x1:x2], (sx2 - sx1, sy2 - sy1), interpolation=cv2.INTER_AREA)
        corr = np.corrcoef(crop.ravel(), source.ravel())[0, 1]
        assert corr > 0.9, (f, corr)
        # A box shifted by a third of its width no longer fits: the check has teeth.
        dx = (x2 - x1) // 3
        if x1 - dx >= 0:
            moved = cv2.resize(frame[y1:y2, x1 - dx:x2 - dx], (sx2 - sx1, sy2 - sy1), interpolation=cv2.INTER_AREA)
            assert np.corrcoef(moved.ravel(), source.ravel())[0, 1] < corr - 0.05
        checked += 1
    return checked


@needs_media
def test_listeners_are_alive_not_frozen(composed: Path, tmp_path: Path) -> None:
    plan = _plan(tmp_path)
    listened = 0
    for person in ("A", "B"):
        clip = plan.clips[person]
        fx1, fy1, fx2, fy2 = (int(v) for v in clip.face_box)
        faces_of_clip = clip.frames[:, fy1:fy2, fx1:fx2].astype(np.float32)
        frames, mouthing = plan.source_frame[person], plan.mouthing[person]
        for slot in range(1, plan.n_slots):
            if mouthing[slot] or mouthing[slot - 1]:
                continue
            listened += 1
            a, b = int(frames[slot - 1]), int(frames[slot])
            assert a != b and b in clip.silent
            # Different source frames, and different pictures: the face keeps moving a little.
            assert np.abs(faces_of_clip[a] - faces_of_clip[b]).mean() > 0.3
    assert listened > 50
    # And in the encoded video: consecutive frames of a listening close-up differ on the face.
    faces = pq.read_table(composed / TRUTH / "faces.parquet").to_pylist()
    speaking = {(r["frame"], r["person_id"]): r["speaking"]
                for r in pq.read_table(composed / TRUTH / "speaking.parquet").to_pylist()}
    video = _decode(composed / "videos/synth-0000.mp4", SMALL["width"], SMALL["height"]).astype(np.float32)
    boxes = {(f["frame"], f["person_id"]): f for f in faces}
    diffs = []
    for (frame, person), f in boxes.items():
        prev = boxes.get((frame - 1, person))
        if prev is None or prev["shot_index"] != f["shot_index"]:
            continue
        # Faces of 48 px and more (the face stage drops smaller ones): a 40-45 px face (wide shots at 320x180) that barely moves is
        # left unchanged between frames by x264 at crf 26 (measured diffs 0.00-0.03).
        if f["x2"] - f["x1"] < 48:
            continue
        if speaking[(frame, person)] or speaking[(frame - 1, person)]:
            continue
        x1, y1, x2, y2 = (int(f[k]) for k in ("x1", "y1", "x2", "y2"))
        diffs.append(np.abs(video[frame, y1:y2, x1:x2] - video[frame - 1, y1:y2, x1:x2]).mean())
    assert len(diffs) > 20
    assert np.mean(np.array(diffs) > 0.2) > 0.9, np.round(diffs, 2)


@needs_media
def test_pyscenedetect_finds_the_truth_boundaries(composed: Path) -> None:
    scenedetect = pytest.importorskip("scenedetect")
    video = scenedetect.open_video(str(composed / "videos/synth-0000.mp4"), backend="opencv")
    manager = scenedetect.SceneManager()
    manager.add_detector(scenedetect.ContentDetector())
    manager.detect_scenes(video=video)
    found = [start.frame_num for start, _ in manager.get_scene_list()][1:]
    truth = [s["start_frame"] for s in pq.read_table(composed / TRUTH / "shots.parquet").to_pylist()][1:]
    assert len(found) == len(truth)
    assert all(abs(f - t) <= 1 for f, t in zip(found, truth, strict=True)), (found, truth)
