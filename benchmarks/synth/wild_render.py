"""Drawing a realistic video: each person's recording frame, cropped and scaled into its screen region.

A close shot fills the canvas with one recording; a two-shot shows two regions side by side
(a split screen, as in TV interviews and video calls). Where a crop reaches beyond its recording
(a square or portrait recording in a wide region) the shot's backdrop shows (`render.make_backdrop`).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from voxhear.benchmarks.synth import geometry
from voxhear.benchmarks.synth.render import backdrop_view, encode_video
from voxhear.benchmarks.synth.wild_script import Framing, WildPlan


def render_wild_video(plan: WildPlan, out_path: Path, audio_path: Path, crf: int) -> None:
    """Encode the planned frames with the given audio into `out_path` (an mp4)."""
    encode_video(plan, out_path, audio_path, crf, lambda frame, backdrops: render_wild_frame(plan, frame, backdrops))


def render_wild_frame(plan: WildPlan, frame: int, backdrops: dict[str, np.ndarray]) -> np.ndarray:
    shot = plan.shot_of_frame(frame)
    canvas = backdrop_view(backdrops, shot, geometry.shot_progress(shot, frame), plan.width, plan.height)
    for framing in shot.placements:
        person = framing.person_id
        clip = plan.clips[person]
        assert clip.frames is not None
        _paste(canvas, clip.frames[int(plan.source_frame[person][frame])], framing)
    return canvas


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
