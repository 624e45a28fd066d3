"""Drawing a realistic video: each person's recording frame, cropped and scaled into its screen region.

A close shot fills the canvas with one recording; a two-shot shows two regions side by side
(a split screen, as in TV interviews and video calls). Where a crop reaches beyond its recording
(a square or portrait recording in a wide region) the shot's backdrop shows (`render.make_backdrop`).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from voxhear.benchmarks.synth.media import VideoWriter
from voxhear.benchmarks.synth.render import make_backdrop
from voxhear.benchmarks.synth.script import Shot
from voxhear.benchmarks.synth.wild_script import Framing, WildPlan


def render_wild_video(plan: WildPlan, out_path: Path, audio_path: Path, crf: int) -> None:
    """Encode the planned frames with the given audio into `out_path` (an mp4)."""
    backdrops = {k: make_backdrop(s, plan.width, plan.height) for k, s in plan.backdrop_seeds.items()}
    writer = VideoWriter(out_path, audio_path, plan.width, plan.height, plan.fps, crf=crf)
    try:
        for frame in range(plan.n_frames):
            writer.write(render_wild_frame(plan, frame, backdrops))
    finally:
        writer.close()


def render_wild_frame(plan: WildPlan, frame: int, backdrops: dict[str, np.ndarray]) -> np.ndarray:
    shot = plan.shot_of_frame(frame)
    px, py = _pan(shot, frame)
    canvas = backdrops[shot.kind][py:py + plan.height, px:px + plan.width].copy()
    for framing in shot.placements:
        person = framing.person_id
        clip = plan.clips[person]
        assert clip.frames is not None
        _paste(canvas, clip.frames[int(plan.source_frame[person][frame])], framing)
    return canvas


def _pan(shot: Shot, frame: int) -> tuple[int, int]:
    length = shot.end_frame - shot.start_frame
    u = 0.0 if length <= 1 else (frame - shot.start_frame) / (length - 1)
    (px0, py0), (px1, py1) = shot.pan
    return int(round(px0 + (px1 - px0) * u)), int(round(py0 + (py1 - py0) * u))


def _paste(canvas: np.ndarray, source: np.ndarray, framing: Framing) -> None:
    """Warp `source` into the framing's region; region pixels outside the recording keep the backdrop.

    The framing maps continuous coordinates (pixel i spans [i, i+1)); warpAffine works on pixel
    centres, so its translation is shifted by (scale - 1) / 2.
    """
    x0, y0, w, h = framing.region
    s = framing.scale
    tx, ty = framing.offset
    matrix = np.array([[s, 0.0, tx - x0 + 0.5 * (s - 1.0)], [0.0, s, ty - y0 + 0.5 * (s - 1.0)]], dtype=np.float64)
    roi = canvas[y0:y0 + h, x0:x0 + w]
    cv2.warpAffine(source, matrix, (w, h), dst=roi, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_TRANSPARENT)
