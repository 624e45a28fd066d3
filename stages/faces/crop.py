"""Face-centred square crops and the crop video writer (H.264 through an ffmpeg pipe)."""

from __future__ import annotations

import contextlib
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from voxhear.pipeline.stage import InputError
from voxhear.stages.media import FFMPEG, TIMEOUT_BASE_S, h264_output, tool_timeout

# The longest one frame may take to enter the encoder's pipe: a hung encoder stops reading, and the
# write would block forever. Closing (the encoder finishing) gets tool_timeout of the frames' length.
WRITE_TIMEOUT_S = TIMEOUT_BASE_S
# How often the watchdog looks at the clock (a hung encoder is killed this much late at most).
WATCH_EVERY_S = 0.5


def crop_square(frame: np.ndarray, box: np.ndarray, size: int) -> np.ndarray:
    """The square `box` (x1, y1, x2, y2; may reach past the frame) resampled to size x size.

    Parts outside the frame are black: replicating edge pixels would smear streaks into the crop.
    """
    x1, y1, x2, y2 = (float(v) for v in box)
    scale = size / max(x2 - x1, 1e-6)
    matrix = np.array([[scale, 0.0, -x1 * scale], [0.0, scale, -y1 * scale]], np.float64)
    # Shrinking by more than 2x with bilinear sampling aliases; area-average first.
    if scale < 0.5:
        return cv2.resize(_cut(frame, box), (size, size), interpolation=cv2.INTER_AREA)
    return cv2.warpAffine(
        frame, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0)
    )


def _cut(frame: np.ndarray, box: np.ndarray) -> np.ndarray:
    """The integer box out of the frame, padded with black where it leaves the frame."""
    h, w = frame.shape[:2]
    x1, y1 = int(np.floor(box[0])), int(np.floor(box[1]))
    side = max(1, int(round(box[2] - box[0])))
    out = np.zeros((side, side) + frame.shape[2:], frame.dtype)
    sx1, sy1 = max(0, x1), max(0, y1)
    sx2, sy2 = min(w, x1 + side), min(h, y1 + side)
    if sx2 > sx1 and sy2 > sy1:
        out[sy1 - y1 : sy2 - y1, sx1 - x1 : sx2 - x1] = frame[sy1:sy2, sx1:sx2]
    return out


def blur_score(gray: np.ndarray) -> float:
    """Variance of the Laplacian (higher is sharper); compare only at one crop size."""
    return float(cv2.Laplacian(gray, cv2.CV_64F).var())


class Watchdog:
    """Kills a process when a call on it runs past its deadline.

    A write into a pipe (or a wait) cannot time out by itself; killing the process ends it (the
    write fails with BrokenPipeError, the wait returns), and `fired` tells the caller why.
    """

    def __init__(self, process: subprocess.Popen) -> None:
        self.process = process
        self.fired = False
        self._deadline: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True, name="crop-writer-watchdog")
        self._thread.start()

    @contextlib.contextmanager
    def limit(self, seconds: float) -> Iterator[None]:
        """Run the body with the process killed if the body takes over `seconds`."""
        # One float assignment per call (atomic): cheap enough for every frame.
        self._deadline = time.monotonic() + seconds
        try:
            yield
        finally:
            self._deadline = None

    def stop(self) -> None:
        self._stop.set()

    def _watch(self) -> None:
        while not self._stop.wait(WATCH_EVERY_S):
            deadline = self._deadline
            if deadline is not None and time.monotonic() > deadline and self.process.poll() is None:
                self.fired = True
                self.process.kill()


class CropVideoWriter:
    """Write BGR frames of one size into an H.264 mp4 (yuv420p, constant frame rate, no audio).

    Every write and the close run under a time limit (a `Watchdog` kills a hung encoder): the
    input's row then fails with reason `timeout`, as ffmpeg calls through `media.run_tool` do.
    """

    def __init__(
        self, path: Path, size: int, fps: float, crf: int = 20, preset: str = "veryfast", keyframe_every: int = 0
    ) -> None:
        """`keyframe_every` > 0 puts a closed-GOP keyframe on every such frame and nowhere else
        (no scene-cut keyframes), so that clips can be cut from the crop on a known grid without
        re-encoding; 0 leaves the keyframes to the encoder."""
        self.path = Path(path)
        self.size = size
        self.fps = fps
        command = [
            *FFMPEG,
            "-f",
            "rawvideo",
            "-pix_fmt",
            "bgr24",
            "-s",
            f"{size}x{size}",
            "-r",
            f"{fps:g}",
            "-i",
            "-",
            *h264_output(crf, preset),
            "-threads",
            "1",
            "-x264-params",
            "threads=1:lookahead-threads=1"
            + (f":keyint={keyframe_every}:min-keyint={keyframe_every}:scenecut=0" if keyframe_every > 0 else ""),
            "-movflags",
            "+faststart",
            "-f",
            "mp4",
            str(self.path),
        ]
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
        self.watchdog = Watchdog(self.process)
        self.frames = 0

    def write(self, frame: np.ndarray) -> None:
        assert self.process.stdin is not None
        try:
            with self.watchdog.limit(WRITE_TIMEOUT_S):
                self.process.stdin.write(np.ascontiguousarray(frame).tobytes())
        except BrokenPipeError:
            if self.watchdog.fired:
                self.abort()
                self._raise_if_timed_out()
            self.close()  # raises with ffmpeg's own error where it has one
            raise
        self.frames += 1

    def close(self) -> None:
        try:
            with self.watchdog.limit(tool_timeout(self.frames / max(self.fps, 1e-6))):
                with contextlib.suppress(BrokenPipeError):  # flushing into an encoder killed meanwhile
                    if self.process.stdin and not self.process.stdin.closed:
                        self.process.stdin.close()
                stderr = self.process.stderr.read().decode("utf-8", "replace") if self.process.stderr else ""
                code = self.process.wait()
        finally:
            self.watchdog.stop()
        self._raise_if_timed_out()
        if code != 0:
            raise RuntimeError(f"ffmpeg could not write the face crop {self.path}: {stderr.strip()[-500:]}")

    def abort(self) -> None:
        """Stop without caring for the output (on an error elsewhere)."""
        self.watchdog.stop()
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        for stream in (self.process.stdin, self.process.stderr):
            if stream and not stream.closed:
                with contextlib.suppress(BrokenPipeError):  # frames still buffered for the dead encoder
                    stream.close()

    def _raise_if_timed_out(self) -> None:
        if self.watchdog.fired:
            raise InputError(
                "timeout", f"ffmpeg writing the face crop {self.path} stopped taking frames and was stopped"
            )
