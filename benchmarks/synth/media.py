"""Decoding and encoding through the system ffmpeg (one subprocess per call)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from voxhear.benchmarks.synth.options import SAMPLE_RATE

FFMPEG = "ffmpeg"


def _run(args: list[str], stdin: bytes | None = None) -> bytes:
    proc = subprocess.run([FFMPEG, "-nostdin", "-v", "error", *args], input=stdin,
                          capture_output=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"ffmpeg {' '.join(args)} failed: {proc.stderr.decode(errors='replace')}")
    return proc.stdout


def decode_video(path: Path, width: int, height: int) -> np.ndarray:
    """Decode every frame of `path` as BGR uint8, shape (frames, height, width, 3)."""
    raw = _run(["-i", str(path), "-f", "rawvideo", "-pix_fmt", "bgr24", "-"])
    frame_bytes = width * height * 3
    if len(raw) % frame_bytes:
        raise ValueError(f"{path}: decoded size {len(raw)} is not whole {width}x{height} frames")
    return np.frombuffer(raw, np.uint8).reshape(-1, height, width, 3)


def decode_audio(path: Path) -> np.ndarray:
    """Decode `path` to mono float32 at 16 kHz (channels averaged by ffmpeg)."""
    raw = _run(["-i", str(path), "-vn", "-ac", "1", "-ar", str(SAMPLE_RATE), "-f", "f32le", "-"])
    return np.frombuffer(raw, np.float32).copy()


class VideoWriter:
    """Pipes BGR frames into ffmpeg and muxes them with an audio file into an mp4.

    The flags make the bytes a function of the frames and audio alone: bitexact muxing and
    encoding (no version strings), no metadata or creation time, and a fixed x264 thread count
    (x264 is deterministic for a given thread count, not across them).
    """

    def __init__(self, out_path: Path, audio_path: Path, width: int, height: int, fps: float,
                 crf: int = 26) -> None:
        self.width, self.height = width, height
        args = [FFMPEG, "-nostdin", "-v", "error", "-y",
                "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{width}x{height}",
                "-r", _rate(fps), "-i", "-",
                "-i", str(audio_path),
                "-map", "0:v:0", "-map", "1:a:0", "-map_metadata", "-1", "-map_chapters", "-1",
                "-c:v", "libx264", "-preset", "veryfast", "-crf", str(crf), "-pix_fmt", "yuv420p",
                "-threads", "2", "-x264-params", "threads=2:lookahead-threads=1",
                "-c:a", "aac", "-b:a", "64k", "-ac", "1", "-ar", str(SAMPLE_RATE),
                "-fflags", "+bitexact", "-flags:v", "+bitexact", "-flags:a", "+bitexact",
                "-movflags", "+faststart", "-f", "mp4", str(out_path)]
        self._proc = subprocess.Popen(args, stdin=subprocess.PIPE, stderr=subprocess.PIPE)

    def write(self, frame: np.ndarray) -> None:
        if frame.shape != (self.height, self.width, 3) or frame.dtype != np.uint8:
            raise ValueError(f"frame {frame.shape} {frame.dtype} is not {self.height}x{self.width}x3 uint8")
        assert self._proc.stdin is not None
        self._proc.stdin.write(frame.tobytes())

    def write_all(self, frames: Iterable[np.ndarray]) -> None:
        for frame in frames:
            self.write(frame)

    def close(self) -> None:
        assert self._proc.stdin is not None
        self._proc.stdin.close()
        err = self._proc.stderr.read() if self._proc.stderr else b""
        if self._proc.wait() != 0:
            raise RuntimeError(f"ffmpeg encode failed: {err.decode(errors='replace')}")


def _rate(fps: float) -> str:
    # ffmpeg wants a rational; integers are by far the common case.
    return str(int(fps)) if float(fps).is_integer() else f"{fps:.6f}"
