"""Drawing the frames of a planned video: a backdrop per camera set-up and the faces on it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from voxhear.benchmarks.synth import geometry
from voxhear.benchmarks.synth.media import VideoWriter
from voxhear.benchmarks.synth.people import GridClip
from voxhear.benchmarks.synth.script import PAN_PX, Shot, VideoPlan

# Muted wall and furniture colours (BGR); a backdrop is a gradient between two of them.
PALETTE = np.array([
    (182, 200, 214), (150, 172, 160), (172, 152, 130), (96, 122, 170), (160, 165, 172),
    (92, 140, 142), (118, 92, 70), (200, 222, 232), (120, 130, 150), (140, 120, 150),
], dtype=np.float32)
# How much of the GRID frame around the face box is pasted (shares of the box size), and the
# width of its soft edge (share of the pasted region's smaller side).
CROP_SIDE = 0.75
CROP_TOP = 0.6
FEATHER = 0.14


@dataclass(slots=True)
class Cutout:
    """The part of a GRID clip that is pasted, with its soft-edged alpha."""

    frames: np.ndarray  # (75, h, w, 3) uint8
    alpha: np.ndarray  # (h, w) float32 in [0, 1]
    origin: tuple[int, int]  # (x, y) of the region in source pixels


def make_cutout(clip: GridClip) -> Cutout:
    x1, y1, x2, y2 = clip.face_box
    bw, bh = x2 - x1, y2 - y1
    _, src_h, src_w, _ = clip.frames.shape
    left, right = max(0, int(x1 - CROP_SIDE * bw)), min(src_w, int(np.ceil(x2 + CROP_SIDE * bw)))
    top = max(0, int(y1 - CROP_TOP * bh))
    frames = clip.frames[:, top:, left:right]
    ramp = max(2, int(FEATHER * min(frames.shape[1:3])))
    # Some GRID chins are a few pixels above the frame's bottom: rather than fade the chin, the
    # last row (shirt) is stretched down and the bottom fade happens in that extension.
    frames = np.pad(frames, ((0, 0), (0, ramp), (0, 0), (0, 0)), mode="edge")
    h, w = frames.shape[1:3]

    def edge(n: int, far_end_only: bool = False) -> np.ndarray:
        i = np.arange(n)
        d = (n - 1 - i if far_end_only else np.minimum(i, n - 1 - i)).astype(np.float32)
        return np.clip((d + 0.5) / ramp, 0.0, 1.0)

    top_fade = edge(h)
    top_fade[h // 2:] = 1.0
    alpha = np.outer(np.minimum(top_fade, edge(h, far_end_only=True)), edge(w))
    alpha = alpha * alpha * (3 - 2 * alpha)  # smoothstep: no visible seam at the ramp's ends
    return Cutout(frames=np.ascontiguousarray(frames), alpha=alpha.astype(np.float32), origin=(left, top))


def make_backdrop(seed: int, width: int, height: int) -> np.ndarray:
    """A wall-like backdrop, PAN_PX larger than the canvas each way so the camera can drift.

    A vertical gradient between two palette colours, soft large-scale blotches, a few blurred
    rectangles (frames, shelves, a window) and a little static grain: plain, never black, and
    different per camera set-up so that a cut changes the background too.
    """
    rng = np.random.default_rng(seed)
    h, w = height + PAN_PX, width + PAN_PX
    top, bottom = PALETTE[rng.choice(len(PALETTE), size=2, replace=False)]
    t = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]
    img = np.broadcast_to(top * (1 - t) + bottom * t, (h, w, 3)).copy()
    blotch = rng.normal(0.0, 1.0, (max(2, h // 40), max(2, w // 40), 1)).astype(np.float32)
    img += 10.0 * cv2.resize(blotch, (w, h), interpolation=cv2.INTER_CUBIC)[:, :, None]
    for _ in range(int(rng.integers(2, 5))):
        rw, rh = int(rng.uniform(0.08, 0.3) * w), int(rng.uniform(0.1, 0.4) * h)
        rx, ry = int(rng.integers(0, w - rw)), int(rng.integers(0, h - rh))
        shade = PALETTE[int(rng.integers(len(PALETTE)))] * float(rng.uniform(0.6, 1.1))
        cv2.rectangle(img, (rx, ry), (rx + rw, ry + rh), shade.tolist(), thickness=-1)
    img = cv2.GaussianBlur(img, (0, 0), sigmaX=max(1.0, width / 320))
    img += rng.normal(0.0, 2.0, img.shape).astype(np.float32)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def render_video(plan: VideoPlan, out_path: Path, audio_path: Path, crf: int) -> None:
    """Encode the planned frames with the given audio into `out_path` (an mp4)."""
    cutouts = {p: make_cutout(c) for p, c in plan.clips.items()}
    encode_video(plan, out_path, audio_path, crf,
                 lambda frame, backdrops: render_frame(plan, frame, cutouts, backdrops))


def encode_video(plan, out_path: Path, audio_path: Path, crf: int,
                 render: Callable[[int, dict[str, np.ndarray]], np.ndarray]) -> None:
    """Encode every frame of a plan of either mode, drawn by `render(frame, backdrops)` on the
    backdrops of the plan's camera set-ups, with the given audio into `out_path` (an mp4)."""
    backdrops = {k: make_backdrop(s, plan.width, plan.height) for k, s in plan.backdrop_seeds.items()}
    writer = VideoWriter(out_path, audio_path, plan.width, plan.height, plan.fps, crf=crf)
    try:
        for frame in range(plan.n_frames):
            writer.write(render(frame, backdrops))
    finally:
        writer.close()


def backdrop_view(backdrops: dict[str, np.ndarray], shot: Shot, progress: float, width: int,
                  height: int) -> np.ndarray:
    """A fresh canvas: the part of the shot's backdrop the camera sees at `progress` (0 at the
    shot's first frame, 1 at its last) of its pan."""
    (px0, py0), (px1, py1) = shot.pan
    px, py = int(round(px0 + (px1 - px0) * progress)), int(round(py0 + (py1 - py0) * progress))
    return backdrops[shot.kind][py:py + height, px:px + width].copy()


def render_frame(plan: VideoPlan, frame: int, cutouts: dict[str, Cutout],
                 backdrops: dict[str, np.ndarray]) -> np.ndarray:
    shot = plan.shot_of_frame(frame)
    u = geometry.shot_progress(shot, frame)
    canvas = backdrop_view(backdrops, shot, u, plan.width, plan.height)
    slot = plan.slot_of_frame(frame)
    for placement in shot.placements:
        person = placement.person_id
        matrix = geometry.transform_at(placement, u, plan.clips[person].face_box)
        _paste(canvas, cutouts[person], int(plan.source_frame[person][slot]), matrix)
    return canvas


def _paste(canvas: np.ndarray, cutout: Cutout, source_frame: int, matrix: np.ndarray) -> None:
    """Alpha-blend one cutout frame into the canvas under `matrix` (source -> canvas pixels)."""
    h, w = cutout.alpha.shape
    s = matrix[0, 0]
    # Matrix from cutout pixels to canvas pixels.
    tx = matrix[0, 2] + s * cutout.origin[0]
    ty = matrix[1, 2] + s * cutout.origin[1]
    x0, y0 = max(0, int(np.floor(tx))), max(0, int(np.floor(ty)))
    x1, y1 = min(canvas.shape[1], int(np.ceil(tx + s * w))), min(canvas.shape[0], int(np.ceil(ty + s * h)))
    if x1 <= x0 or y1 <= y0:
        return
    local = np.array([[s, 0.0, tx - x0], [0.0, s, ty - y0]], dtype=np.float64)
    size = (x1 - x0, y1 - y0)
    fg = cv2.warpAffine(cutout.frames[source_frame], local, size, flags=cv2.INTER_LINEAR,
                        borderMode=cv2.BORDER_REPLICATE)
    alpha = cv2.warpAffine(cutout.alpha, local, size, flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
    roi = canvas[y0:y1, x0:x1]
    roi[...] = cv2.blendLinear(fg, roi, alpha, 1.0 - alpha)
