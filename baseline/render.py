"""Side-by-side video of true and predicted motion, drawn as a schematic face, with the clip's audio.

The face is a sketch driven by the motion values, not a rendering of the person: the head
outline turns with yaw, pitch and roll; eyes close with eyeBlink; brows rise with browInnerUp /
browOuterUp and fall with browDown; the mouth opens with jawOpen and mouthLowerDown, widens with
mouthSmile / mouthStretch and narrows with mouthPucker. Frames without a face mesh draw the true
side grey.
"""

from __future__ import annotations

import math
import subprocess
import tempfile
from pathlib import Path

import cv2
import numpy as np
import soundfile as sf

from voxhear.baseline.data import expand_shards, load_windows
from voxhear.baseline.evaluate import predict
from voxhear.baseline.train import load_model, pick_device
from voxhear.pipeline.io import atomic_path
from voxhear.pipeline.records import STATE_NAMES

PANEL = 320
BAR = 40
FPS = 25


class FaceSketch:
    """Draws one frame of motion (52 blendshapes + 6 pose) into a square panel."""

    def __init__(self, names: list[str] | tuple[str, ...]) -> None:
        self.index = {str(n): i for i, n in enumerate(names)}

    def _bs(self, blend: np.ndarray, *names: str) -> float:
        values = [float(blend[self.index[n]]) for n in names if n in self.index]
        return float(np.clip(np.mean(values), 0.0, 1.0)) if values else 0.0

    def draw(self, panel: np.ndarray, motion: np.ndarray, color: tuple[int, int, int]) -> None:
        blend, pose = motion[:52], motion[52:58]
        yaw, pitch, roll = (math.radians(float(np.clip(a, -60, 60))) for a in pose[:3])
        size = panel.shape[0]
        radius = 0.36 * size
        center = np.array([size / 2 + 0.5 * radius * math.sin(yaw), size / 2 + 0.15 * size])
        center[1] -= 0.5 * radius * math.sin(pitch) + 0.1 * size
        rot = np.array([[math.cos(roll), -math.sin(roll)], [math.sin(roll), math.cos(roll)]])

        def at(u: float, v: float) -> tuple[int, int]:
            # Face-local (u right, v down, head radius 1); features slide with yaw and pitch.
            p = np.array([u * math.cos(yaw) + 0.35 * math.sin(yaw), v + 0.3 * math.sin(-pitch)]) * radius
            q = center + rot @ p
            return int(round(q[0])), int(round(q[1]))

        axes = (int(radius * (0.78 + 0.1 * math.cos(yaw))), int(radius * 1.05))
        cv2.ellipse(panel, at(0, 0), axes, math.degrees(roll), 0, 360, color, 2, cv2.LINE_AA)
        for side, sign in (("Left", -1), ("Right", 1)):
            blink = self._bs(blend, f"eyeBlink{side}")
            wide = self._bs(blend, f"eyeWide{side}")
            eye = at(sign * 0.33, -0.18)
            h = max(1, int(radius * 0.1 * (1.0 - blink + 0.5 * wide)))
            cv2.ellipse(panel, eye, (int(radius * 0.15), h), math.degrees(roll), 0, 360, color, 2, cv2.LINE_AA)
            if blink < 0.6:
                cv2.circle(panel, eye, max(1, min(h, int(radius * 0.05))), color, -1, cv2.LINE_AA)
            inner = self._bs(blend, "browInnerUp") - self._bs(blend, f"browDown{side}")
            outer = self._bs(blend, f"browOuterUp{side}") - self._bs(blend, f"browDown{side}")
            cv2.line(panel, at(sign * 0.12, -0.4 - 0.25 * inner), at(sign * 0.52, -0.42 - 0.25 * outer),
                     color, 3, cv2.LINE_AA)
        cv2.line(panel, at(0, -0.1), at(0.05, 0.15), color, 2, cv2.LINE_AA)
        self._mouth(panel, blend, at, color)

    def _mouth(self, panel, blend, at, color) -> None:
        jaw = self._bs(blend, "jawOpen")
        lower = self._bs(blend, "mouthLowerDownLeft", "mouthLowerDownRight")
        smile = self._bs(blend, "mouthSmileLeft", "mouthSmileRight")
        stretch = self._bs(blend, "mouthStretchLeft", "mouthStretchRight")
        pucker = self._bs(blend, "mouthPucker", "mouthFunnel")
        half = 0.28 * (1.0 + 0.5 * smile + 0.4 * stretch - 0.5 * pucker)
        opening = 0.02 + 0.45 * jaw + 0.15 * lower
        corner_v = 0.5 - 0.12 * smile
        upper = [at(u * half, 0.5 - 0.03 * math.cos(u * math.pi / 2)) for u in np.linspace(-1, 1, 9)]
        lower_lip = [at(u * half, 0.5 + opening * math.cos(u * math.pi / 2)) for u in np.linspace(1, -1, 9)]
        upper[0], upper[-1] = at(-half, corner_v), at(half, corner_v)
        poly = np.array(upper + lower_lip, np.int32)
        cv2.fillPoly(panel, [poly], (40, 40, 60), cv2.LINE_AA)
        cv2.polylines(panel, [poly], True, color, 2, cv2.LINE_AA)


def compose_frame(sketch: FaceSketch, true: np.ndarray, pred: np.ndarray, valid: bool, state: int,
                  t: float, title: str) -> np.ndarray:
    """One BGR frame: a caption bar above the true (left) and predicted (right) face."""
    frame = np.full((PANEL + BAR, 2 * PANEL, 3), 250, np.uint8)
    for i, (motion, label, color) in enumerate(((true, "true", (60, 60, 60) if valid else (190, 190, 190)),
                                                (pred, "predicted", (170, 80, 20)))):
        panel = frame[BAR:, i * PANEL:(i + 1) * PANEL]
        sketch.draw(panel, motion, color)
        caption = label if valid or i else "true (no face mesh)"
        cv2.putText(panel, caption, (10, PANEL - 12), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
    state_name = STATE_NAMES[state] if 0 <= state < len(STATE_NAMES) else "?"
    cv2.putText(frame, f"{title}  {t:5.2f}s  {state_name}", (10, 26), cv2.FONT_HERSHEY_SIMPLEX, 0.6,
                (0, 0, 0), 1, cv2.LINE_AA)
    cv2.line(frame, (PANEL, BAR), (PANEL, PANEL + BAR), (200, 200, 200), 1)
    return frame


def render_checkpoint(checkpoint: str | Path, shards: str | list[str], out: str | Path, split: str = "test",
                      key: str | None = None, device: str | None = None) -> dict:
    """Write an mp4 of one clip of `split` (or clip `key`): true vs predicted face, with the mix audio.

    Returns:
        What was rendered: key, frames, seconds, output path.
    """
    model, ckpt = load_model(checkpoint, pick_device(device))
    cfg = model.cfg
    bank = load_windows(expand_shards(shards), split, cfg.window_frames, cfg.window_frames, cfg.n_mels,
                        key=key, one_clip=True, keep_mix=True, drop_partial=False)
    order = np.argsort(bank.starts)
    n = sum(bank.lengths)  # the padded tail window's padding is cut off again
    pred = predict(model, bank)[order].flatten(0, 1).numpy()[:n]
    true = bank.motion[order].flatten(0, 1).numpy()[:n]
    valid = bank.valid[order].flatten().numpy()[:n]
    state = bank.state[order].flatten().numpy()[:n]
    audio = bank.mix[order].flatten().numpy()[:n * 640]
    sketch = FaceSketch(bank.blendshape_names)
    out = Path(out)
    title = f"{bank.keys[0]}  {cfg.variant} step {ckpt['step']}"
    with tempfile.TemporaryDirectory() as tmp, atomic_path(out) as target:
        wav = Path(tmp) / "mix.wav"
        sf.write(wav, audio, 16000, subtype="PCM_16")
        cmd = ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "bgr24",
               "-s", f"{2 * PANEL}x{PANEL + BAR}", "-r", str(FPS), "-i", "-", "-i", str(wav),
               "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "96k",
               "-shortest", "-f", "mp4", str(target)]
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE)
        try:
            for i in range(len(true)):
                frame = compose_frame(sketch, true[i], pred[i], bool(valid[i]), int(state[i]), i / FPS, title)
                proc.stdin.write(frame.tobytes())
        finally:
            proc.stdin.close()
            if proc.wait() != 0:
                raise RuntimeError(f"ffmpeg failed to write {out} (exit {proc.returncode})")
    return {"key": bank.keys[0], "frames": int(len(true)), "seconds": len(true) / FPS, "out": str(out)}


def render_motion_image(motion: np.ndarray, names: list[str] | tuple[str, ...]) -> np.ndarray:
    """One panel of one frame of motion, for inspection and tests."""
    panel = np.full((PANEL, PANEL, 3), 250, np.uint8)
    FaceSketch(names).draw(panel, np.asarray(motion, np.float32), (60, 60, 60))
    return panel

