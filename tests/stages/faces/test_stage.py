"""The face stage on small shots made of real GRID faces: tracks, media, arrays and filter reasons."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
import soundfile as sf

from tests.stages.faces.conftest import grid_frames
from voxhear.pipeline.settings import check_config
from voxhear.stages.faces.config import FaceConfig
from voxhear.pipeline.records import STATUS_FILTERED, STATUS_OK, ShotRecord
from voxhear.pipeline.stage import RunContext, apply_stage
from voxhear.stages.faces.stage import FaceStage

FPS = 25
W, H = 640, 360


def write_shot(folder: Path, frames: list[np.ndarray], name: str = "shot") -> ShotRecord:
    """A ShotRecord whose segment is `frames` (H.264) with a 16 kHz tone as its audio."""
    folder.mkdir(parents=True, exist_ok=True)
    video = folder / f"{name}.mp4"
    command = ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "bgr24",
               "-s", f"{W}x{H}", "-r", str(FPS), "-i", "-", "-c:v", "libx264", "-preset", "ultrafast",
               "-pix_fmt", "yuv420p", str(video)]
    subprocess.run(command, input=b"".join(np.ascontiguousarray(f).tobytes() for f in frames), check=True)
    audio = folder / f"{name}.wav"
    t = np.arange(int(len(frames) / FPS * 16000)) / 16000
    sf.write(audio, (0.1 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16000, subtype="PCM_16")
    n = len(frames)
    return ShotRecord(source_uri=str(video), source_id=f"test{name}", video_uri=str(video), audio_uri=str(audio),
                      norm_width=W, norm_height=H, norm_fps=FPS, n_frames=n, shot_index=0, n_shots=1,
                      start_frame=0, end_frame=n, start_s=0.0, end_s=n / FPS, key=f"test{name}-00000000",
                      segment_video_uri=str(video), segment_audio_uri=str(audio))


def canvas() -> np.ndarray:
    return np.full((H, W, 3), (150, 160, 172), np.uint8)


def place(frame: np.ndarray, face: np.ndarray, x: int, y: int, scale: float = 1.0) -> None:
    if scale != 1.0:
        face = cv2.resize(face, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    h, w = face.shape[:2]
    frame[y:y + h, x:x + w] = face


@pytest.fixture(scope="module")
def make_stage(model_store, tmp_path_factory):
    stages = {}

    def factory(**overrides) -> FaceStage:
        key = tuple(sorted(overrides.items()))
        if key not in stages:
            config = FaceConfig(**overrides)
            check_config(config, "faces.")
            run_dir = tmp_path_factory.mktemp("run")
            stage = FaceStage(config, RunContext(run_dir=run_dir, model_store=model_store))
            stage.setup()
            stages[key] = stage
        return stages[key]

    return factory


def test_one_face_gives_one_track_with_its_media(make_stage, tmp_path):
    faces = grid_frames("bbaf2n", 50)
    frames = []
    for face in faces:
        frame = canvas()
        place(frame, face, 140, 36)
        frames.append(frame)
    stage = make_stage(detect_every=5)
    rows = stage.process(write_shot(tmp_path, frames))
    assert [r.status for r in rows] == [STATUS_OK]
    track = rows[0]
    assert (track.track_start_frame, track.track_end_frame) == (0, 50)
    assert track.key == "testshot-face0-00000000" and "." not in track.key
    assert len(track.embedding) == 128
    # Video: square, fixed size, 25 fps, H.264, one frame per track frame.
    probe = json.loads(subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-show_streams", "-of", "json", track.crop_video_uri],
        capture_output=True, text=True, check=True).stdout)["streams"][0]
    assert (probe["codec_name"], probe["width"], probe["height"]) == ("h264", 512, 512)
    assert probe["avg_frame_rate"] == "25/1" and int(probe["nb_read_frames"]) == 50
    data = np.load(track.frames_uri)
    assert data["landmarks"].shape == (50, 478, 3) and data["blendshapes"].shape == (50, 52)
    assert data["rotation_deg"].shape == (50, 3) and data["translation"].shape == (50, 3)
    assert data["box"].shape == (50, 4) and data["crop_box"].shape == (50, 4)
    assert data["has_landmarks"].all()
    assert data["detected"].sum() == 11  # frames 0, 5, ..., 45 and the last
    assert data["confidence"].min() > 0.5
    # The box follows the pasted face (GRID box of bbaf2n moved by the paste offset).
    assert np.abs(np.median(data["box"], axis=0) - [102 + 140, 105 + 36, 204 + 140, 238 + 36]).max() < 12
    assert abs(sf.info(track.track_audio_uri).duration - 2.0) < 0.01
    assert track.face_height_px > 100 and abs(track.yaw_deg) < 20 and track.landmark_fraction == 1.0
    assert track.blur_var > 0 and track.detected_fraction == 1.0
    assert {"decode", "detect", "landmarks", "crop", "identity"} <= set(track.ms_per_frame)
    members = track.shard_members()
    assert list(members) == ["mp4", "flac", "frames.npz", "json"]
    assert json.loads(members["json"])["track_index"] == 0


def test_two_faces_and_a_short_one(make_stage, tmp_path):
    left, right, brief = grid_frames("lbax4n", 40), grid_frames("pwij3p", 40), grid_frames("lrwp9a", 8)
    frames = []
    for i in range(40):
        frame = canvas()
        place(frame, left[i], 0, 40, 0.9)
        place(frame, right[i], 316, 40, 0.9)
        frames.append(frame)
    # A third face passes through for eight frames only (too short to keep).
    for i in range(8):
        small = cv2.resize(brief[i], None, fx=0.5, fy=0.5)
        frames[10 + i][200:200 + small.shape[0], 250:250 + small.shape[1]] = small
    rows = make_stage(detect_every=1).process(write_shot(tmp_path, frames))
    ok = [r for r in rows if r.status == STATUS_OK]
    short = [r for r in rows if r.reason == "track_too_short"]
    assert len(ok) == 2 and len(short) == 1
    assert {r.n_tracks for r in rows} == {3}
    assert len({r.key for r in rows}) == 3
    centres = sorted(np.median(np.load(r.frames_uri)["box"][:, [0, 2]].mean(axis=1)) for r in ok)
    assert centres[0] < 320 < centres[1]
    assert short[0].stage == "faces" and short[0].frames_uri == ""


def test_tiny_faces_are_dropped_with_a_reason(make_stage, tmp_path):
    frames = []
    for face in grid_frames("brbk7n", 30):
        frame = canvas()
        place(frame, face, 300, 150, 0.28)  # a face of about 40 px
        frames.append(frame)
    rows = make_stage(detect_every=1).process(write_shot(tmp_path, frames))
    assert [(r.status, r.reason) for r in rows] == [(STATUS_FILTERED, "face_too_small")]
    assert "faces.min_face_px" in rows[0].error_message
    assert 25 < rows[0].face_height_px < 48 and rows[0].detected_fraction > 0.9


def test_profile_limit_drops_turned_heads(make_stage, tmp_path):
    frames = []
    for face in grid_frames("lwbsza", 30):
        frame = canvas()
        place(frame, face, 140, 36)
        frames.append(frame)
    # No real head holds its yaw within 0.01 degrees: with that limit every face is "turned".
    stage = make_stage(detect_every=5, max_median_abs_yaw=0.01)
    rows = stage.process(write_shot(tmp_path, frames))
    assert [(r.status, r.reason) for r in rows] == [(STATUS_FILTERED, "profile_view")]
    assert rows[0].crop_video_uri == "" and not list(Path(stage.context.work_dir).rglob("*.mp4"))


def test_a_faceless_shot_is_filtered_with_reason_no_face(make_stage, tmp_path):
    frames = []
    for i in range(30):
        frame = canvas()
        cv2.rectangle(frame, (100 + 5 * i, 100), (220 + 5 * i, 260), (40, 90, 200), -1)
        cv2.putText(frame, "no face", (300, 200), cv2.FONT_HERSHEY_SIMPLEX, 2, (20, 20, 20), 3)
        frames.append(frame)
    shot = write_shot(tmp_path, frames)
    [row] = apply_stage(make_stage(detect_every=5), [shot])
    assert (row.status, row.stage, row.reason) == (STATUS_FILTERED, "faces", "no_face")
    assert row.key == shot.key and row.track_index == -1
