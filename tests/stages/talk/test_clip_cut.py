"""Clip videos are cut from the track's crop video by seeking, frame-exact: copied when both ends
are keyframes of the crop, re-encoded when not."""

import subprocess
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from voxhear.stages.faces.crop import CropVideoWriter
from voxhear.stages.talk.stage import TalkStage, clip_windows, keyframe_windows


def _levels(path) -> list[int]:
    capture = cv2.VideoCapture(str(path))
    out = []
    while True:
        ok, frame = capture.read()
        if not ok:
            return out
        out.append(int(round(float(frame.mean()))))


@pytest.mark.parametrize("a, b", [(1, 9), (37, 52), (140, 150)])
def test_a_clip_holds_exactly_frames_a_to_b(tmp_path, a, b):
    # A crop video whose frame i is a flat grey of level i + 40, keyframes every 50 frames (as a
    # long track's are, far apart) so the cut must seek and then drop frames.
    n = 150
    crop = tmp_path / "crop.mp4"
    encoder = subprocess.Popen(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "gray", "-s", "64x64",
         "-r", "25", "-i", "-", "-c:v", "libx264", "-qp", "0", "-g", "50", "-pix_fmt", "yuv420p", str(crop)],
        stdin=subprocess.PIPE,
    )
    assert encoder.stdin is not None
    for i in range(n):
        encoder.stdin.write(np.full((64, 64), i + 40, np.uint8).tobytes())
    encoder.stdin.close()
    assert encoder.wait() == 0
    clip = SimpleNamespace(key="k", clip_video_uri="")
    row = SimpleNamespace(crop_video_uri=str(crop), norm_fps=25.0, track_start_s=0.0, track_end_s=n / 25,
                          source_uri="x.mp4")
    TalkStage.__new__(TalkStage)._write_video(clip, row, a, b, n, tmp_path)  # type: ignore[arg-type]
    levels = _levels(clip.clip_video_uri)
    assert len(levels) == b - a
    assert all(abs(level - (a + k + 40)) <= 1 for k, level in enumerate(levels)), levels


def _frames(path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    out = []
    while (read := capture.read())[0]:
        out.append(read[1])
    return out


def test_clips_between_keyframes_are_copied_bit_for_bit_and_others_encoded(tmp_path, monkeypatch):
    """A crop written with a keyframe every 25 frames (as the face stage writes them): a clip from
    one keyframe to another, or to the end, is the crop's own frames, bit for bit, with no encoder
    run; a clip that starts between keyframes is encoded, still frame-exact."""
    n = 130
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    writer = CropVideoWriter(tmp_path / "crop.mp4", 64, 25.0, keyframe_every=25)
    for i in range(n):
        frame = np.roll(base, 3 * i, axis=1).copy()
        cv2.putText(frame, str(i), (2, 40), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (255, 255, 255), 2)
        writer.write(frame)
    writer.close()
    crop = _frames(tmp_path / "crop.mp4")
    from voxhear.stages.talk.stage import crop_keyframes

    keyframes = crop_keyframes(str(tmp_path / "crop.mp4"), 25.0, "x.mp4")
    assert keyframes == [0, 25, 50, 75, 100, 125]
    row = SimpleNamespace(crop_video_uri=str(tmp_path / "crop.mp4"), norm_fps=25.0, track_start_s=0.0,
                          track_end_s=n / 25, source_uri="x.mp4")
    stage = TalkStage.__new__(TalkStage)
    encoded = []
    real_encode = TalkStage._encode_cut
    monkeypatch.setattr(TalkStage, "_encode_cut", lambda self, *a: encoded.append(a[1:3]) or real_encode(self, *a))
    for a, b in [(50, 100), (100, 130), (25, 50), (60, 100)]:
        clip = SimpleNamespace(key=f"k{a}", clip_video_uri="")
        stage._write_video(clip, row, a, b, n, tmp_path, frozenset(keyframes))  # type: ignore[arg-type]
        frames = _frames(clip.clip_video_uri)
        assert len(frames) == b - a
        if a % 25 == 0:
            assert all(np.array_equal(x, y) for x, y in zip(frames, crop[a:b], strict=True)), (a, b)
    assert encoded == [(60, 100)]


def test_clip_cuts_move_onto_the_crop_keyframes_within_the_length_range():
    fps, every = 25.0, list(range(0, 1234, 25))
    plain = clip_windows(1234, fps, 2.0, 20.0)
    assert plain == [(0, 411), (411, 823), (823, 1234)]
    snapped = keyframe_windows(1234, fps, 2.0, 20.0, every)
    assert snapped == [(0, 400), (400, 825), (825, 1234)]
    assert all(b - a <= 20 * fps for a, b in snapped)
    # A window that is the whole track is never cut; without usable keyframes the cuts stay.
    assert keyframe_windows(480, fps, 2.0, 20.0, every) == [(0, 480)]
    assert keyframe_windows(1234, fps, 2.0, 20.0, [0]) == plain
    assert keyframe_windows(1234, fps, 2.0, 20.0, [0, 1000]) == plain  # too sparse
    # The nearer keyframe would make the last window too long: the other one is taken.
    assert keyframe_windows(1480, fps, 2.0, 20.0, list(range(0, 1480, 25))) == [(0, 500), (500, 1000), (1000, 1480)]
    # Keyframes every 25 frames from frame 0 on a 60 s track: cuts at 20 s and 40 s as before.
    assert keyframe_windows(1500, fps, 2.0, 20.0, list(range(0, 1500, 25))) == clip_windows(1500, fps, 2.0, 20.0)
