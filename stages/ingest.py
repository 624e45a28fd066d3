"""Ingest: fetch, hash, probe and normalize every input once.

After this stage every source is a constant-fps H.264 video, a mono 16 kHz WAV and (for
separators that want it) the audio at its original rate, all in the run's work area, so that no
later stage has to care about containers, variable frame rates or odd sample rates.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import soundfile as sf

from voxhear.pipeline.inputs import is_remote, local_path, open_input
from voxhear.pipeline.io import atomic_path, sha256_file
from voxhear.pipeline.records import SourceRecord
from voxhear.pipeline.settings import require, setting
from voxhear.pipeline.stage import Bound, FilteredError, InputError, RejectReason, Stage
from voxhear.stages.media import FFMPEG, X264_PRESETS, last_lines, probe, run_tool, tool_timeout

# Peak level below which audio counts as silent (about -80 dBFS).
SILENCE_PEAK = 1e-4
# A normalized video shorter than this share of the probed duration means the input is truncated.
MIN_DECODED_SHARE = 0.9


@dataclass
class IngestConfig:
    """Probing and normalization of every input."""

    fps: int = setting(25, gt=0)
    sample_rate: int = setting(16000, choices=(8000, 16000, 22050, 24000, 44100, 48000))
    # Larger frames are scaled down once here so every later stage decodes less.
    max_height: int = setting(720, ge=64)
    # Frames above this many pixels are rejected before decoding (a 16k video would OOM a worker).
    max_pixels: int = setting(4096 * 2304, ge=1)
    min_duration_s: float = setting(1.0, ge=0)
    max_duration_s: float = setting(6 * 3600.0, gt=0)
    # Container frame rates outside this range are treated as broken metadata.
    min_fps: float = setting(5.0, gt=0)
    max_fps: float = setting(240.0, gt=0)
    keep_original_audio: bool = True
    video_crf: int = setting(18, ge=0, le=51)
    x264_preset: str = setting("veryfast", choices=X264_PRESETS)

    def check(self) -> None:
        require(self.max_duration_s > self.min_duration_s, "ingest.max_duration_s", "must exceed min_duration_s")
        require(self.min_fps < self.max_fps, "ingest.min_fps", "must be below max_fps")


class IngestStage(Stage[SourceRecord, SourceRecord]):
    name = "ingest"
    input_type = SourceRecord
    output_type = SourceRecord
    config_class = IngestConfig
    reasons = (
        RejectReason("no_video_stream", (), "the input has no video stream (audio only?)"),
        RejectReason("no_audio_stream", (), "the input has no audio stream"),
        RejectReason("silent_audio", (), "the audio track is digital silence"),
        RejectReason("frame_too_large", ("ingest.max_pixels",), "frame has more pixels than the bound"),
        RejectReason(
            "unsupported_frame_rate",
            ("ingest.min_fps", "ingest.max_fps"),
            "container frame rate outside the accepted range",
            (Bound("ingest.min_fps", "sources", "fps", "min"), Bound("ingest.max_fps", "sources", "fps", "max")),
        ),
        RejectReason(
            "too_short",
            ("ingest.min_duration_s",),
            "input shorter than the bound",
            (Bound("ingest.min_duration_s", "sources", "duration_s", "min"),),
        ),
        RejectReason(
            "too_long",
            ("ingest.max_duration_s",),
            "input longer than the bound",
            (Bound("ingest.max_duration_s", "sources", "duration_s", "max"),),
        ),
    )

    config: IngestConfig

    def process(self, row: SourceRecord) -> list[SourceRecord]:
        local = self._localize(row.source_uri)
        row.size_bytes = local.stat().st_size
        if row.size_bytes == 0:
            raise InputError("empty_file", f"{row.source_uri} is a zero-byte file")
        row.source_id = sha256_file(local)[:16]
        self._probe(local, row)
        self._check_probe(row)
        work = self.context.source_work_dir(row.source_id)
        self._normalize(local, row, work)
        return [row]

    def _localize(self, uri: str) -> Path:
        """Local inputs are read in place; remote ones are copied into the work area once."""
        if not is_remote(uri):
            path = local_path(uri)
            try:
                mode = os.stat(path).st_mode
            except (FileNotFoundError, NotADirectoryError):
                raise InputError("not_found", f"input {uri} does not exist") from None
            if not stat.S_ISREG(mode):
                # Opening a named pipe blocks until something writes to it; a device never ends.
                raise InputError("not_a_regular_file", f"input {uri} is not a regular file (a pipe, device or socket)")
            with open(path, "rb"):  # raises PermissionError for unreadable paths
                pass
            return path
        digest = hashlib.sha1(uri.encode()).hexdigest()[:16]
        target = self.context.work_dir / "_fetched" / digest / Path(uri.split("?")[0]).name
        if not target.exists():
            with atomic_path(target) as tmp, open_input(uri) as src, open(tmp, "wb") as dst:
                while chunk := src.read(1 << 22):
                    dst.write(chunk)
        return target

    def _probe(self, path: Path, row: SourceRecord) -> None:
        info = probe(str(path), row.source_uri)
        fmt = info.get("format", {})
        row.container = fmt.get("format_name", "")
        row.duration_s = float(fmt.get("duration") or 0.0)
        video = [
            s
            for s in info.get("streams", [])
            if s.get("codec_type") == "video" and not s.get("disposition", {}).get("attached_pic")
        ]
        audio = [s for s in info.get("streams", []) if s.get("codec_type") == "audio"]
        row.has_video, row.has_audio = bool(video), bool(audio)
        if video:
            v = video[0]
            row.video_codec = v.get("codec_name", "")
            row.width, row.height = int(v.get("width") or 0), int(v.get("height") or 0)
            row.fps = _frame_rate(v)
            row.duration_s = row.duration_s or float(v.get("duration") or 0.0)
        if audio:
            a = audio[0]
            row.audio_codec = a.get("codec_name", "")
            row.audio_sample_rate = int(a.get("sample_rate") or 0)
            row.audio_channels = int(a.get("channels") or 0)

    def _check_probe(self, row: SourceRecord) -> None:
        cfg = self.config
        if not row.has_video:
            raise FilteredError("no_video_stream", f"{row.source_uri} has no video stream (audio only?)")
        if not row.has_audio:
            raise FilteredError("no_audio_stream", f"{row.source_uri} has no audio stream")
        if row.width <= 0 or row.height <= 0:
            raise InputError("bad_frame_size", f"video stream reports {row.width}x{row.height}")
        if row.width * row.height > cfg.max_pixels:
            raise FilteredError(
                "frame_too_large", f"frame {row.width}x{row.height} exceeds ingest.max_pixels={cfg.max_pixels}"
            )
        if not cfg.min_fps <= row.fps <= cfg.max_fps:
            raise FilteredError(
                "unsupported_frame_rate",
                f"frame rate {row.fps:.3f} is outside [{cfg.min_fps}, {cfg.max_fps}] (broken metadata?)",
            )
        if row.duration_s < cfg.min_duration_s:
            raise FilteredError(
                "too_short", f"duration {row.duration_s:.2f}s < ingest.min_duration_s={cfg.min_duration_s}"
            )
        if row.duration_s > cfg.max_duration_s:
            raise FilteredError(
                "too_long", f"duration {row.duration_s:.0f}s > ingest.max_duration_s={cfg.max_duration_s}"
            )

    def _normalize(self, path: Path, row: SourceRecord, work: Path) -> None:
        cfg = self.config
        threads = str(max(1, int(self.resources.cpus)))
        video_out, audio_out, orig_out = work / "video.mp4", work / "audio16k.wav", work / "audio_orig.flac"
        timeout_s = tool_timeout(row.duration_s)
        # Height is capped and rounded to even numbers because yuv420p needs even dimensions.
        scale = f"scale=-2:'trunc(min({cfg.max_height},ih)/2)*2'"
        with atomic_path(video_out) as tmp:
            _ffmpeg(
                [
                    "-i",
                    str(path),
                    "-map",
                    "0:v:0",
                    "-vf",
                    f"fps={cfg.fps},{scale}",
                    "-c:v",
                    "libx264",
                    "-preset",
                    cfg.x264_preset,
                    "-crf",
                    str(cfg.video_crf),
                    "-pix_fmt",
                    "yuv420p",
                    "-an",
                    "-threads",
                    threads,
                    "-f",
                    "mp4",
                    str(tmp),
                ],
                row.source_uri,
                timeout_s,
            )
        with atomic_path(audio_out) as tmp:
            _ffmpeg(
                [
                    "-i",
                    str(path),
                    "-map",
                    "0:a:0",
                    "-ac",
                    "1",
                    "-ar",
                    str(cfg.sample_rate),
                    "-c:a",
                    "pcm_s16le",
                    "-f",
                    "wav",
                    str(tmp),
                ],
                row.source_uri,
                timeout_s,
            )
        if cfg.keep_original_audio:
            with atomic_path(orig_out) as tmp:
                _ffmpeg(
                    ["-i", str(path), "-map", "0:a:0", "-c:a", "flac", "-f", "flac", str(tmp)],
                    row.source_uri,
                    timeout_s,
                )
            row.audio_orig_uri = str(orig_out)
        options = ("-count_packets", "-select_streams", "v:0")
        norm = probe(str(video_out), row.source_uri, timeout_s, options)["streams"][0]
        row.n_frames = int(norm.get("nb_read_packets") or 0)
        row.norm_width, row.norm_height = int(norm["width"]), int(norm["height"])
        row.norm_fps = float(cfg.fps)
        decoded_s = row.n_frames / cfg.fps
        if decoded_s < MIN_DECODED_SHARE * row.duration_s - 0.5:
            raise InputError(
                "truncated",
                f"only {decoded_s:.2f}s of video decoded out of the "
                f"{row.duration_s:.2f}s the container declares (truncated or corrupt)",
            )
        audio = sf.read(audio_out, dtype="float32")[0]
        if audio.size == 0:
            raise InputError("truncated", "the audio stream decoded to no samples")
        if float(np.max(np.abs(audio))) < SILENCE_PEAK:
            raise FilteredError("silent_audio", "the audio track is digital silence")
        row.video_uri, row.audio_uri = str(video_out), str(audio_out)


def _frame_rate(stream: dict) -> float:
    for key in ("avg_frame_rate", "r_frame_rate"):
        value = stream.get(key, "0/0")
        try:
            rate = Fraction(value)
        except (ValueError, ZeroDivisionError):
            continue
        if rate > 0:
            return float(rate)
    return 0.0


def _ffmpeg(args: list[str], uri: str, timeout_s: float) -> None:
    command = [*FFMPEG, *args]
    result = run_tool(command, timeout_s, uri)
    if result.returncode != 0:
        raise InputError("decode_failed", f"ffmpeg could not decode {uri}: {last_lines(result.stderr)}")
