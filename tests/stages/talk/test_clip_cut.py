"""Clip videos are cut from the track's crop video by seeking, frame-exact."""

import subprocess
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from voxhear.stages.talk.stage import TalkStage


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
    TalkStage._write_video(None, clip, row, a, b, n, tmp_path)  # type: ignore[arg-type]
    levels = _levels(clip.clip_video_uri)
    assert len(levels) == b - a
    assert all(abs(level - (a + k + 40)) <= 1 for k, level in enumerate(levels)), levels
