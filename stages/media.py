"""Running ffmpeg and ffprobe: time limits, and telling a broken input from a broken machine.

Every call has a time limit derived from the duration of the media it reads (`tool_timeout`), so
a decoder stuck on a pathological input ends as a failed row (reason `timeout`) instead of
holding a worker forever. What is not about the input stops the run with a `SystemFault` and
leaves the input uncommitted: a tool that is not installed or cannot be run, a tool killed by a
signal that is not a crash (the OOM killer's SIGKILL, a SIGTERM), a full, over-quota or read-only
disk, an encoder, preset or filter the installed ffmpeg lacks.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
from pathlib import Path
from typing import Any

from voxhear.pipeline.stage import InputError, SystemFault

# Every ffmpeg call starts so: no stdin (a worker has none), errors only, overwrite the temp target.
FFMPEG = ("ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y")

# Options before every input of ffprobe and ffmpeg: local files only. A demuxer that follows
# references (an HLS playlist, a concat list) would otherwise also fetch http, ftp, data: or
# subfile: URLs named inside a file; ingest refuses such containers outright (REFERENCING_FORMATS).
INPUT_OPTIONS = ("-protocol_whitelist", "file")

# x264's presets, for the config keys that name one (a typo would fail every input at its first encode).
X264_PRESETS = (
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
    "placebo",
)


def h264_output(crf: int, preset: str) -> list[str]:
    """ffmpeg output options of every H.264 video the pipeline writes: libx264 at `crf` and
    `preset`, 4:2:0 (what every player and loader decodes)."""
    return ["-c:v", "libx264", "-preset", preset, "-crf", str(crf), "-pix_fmt", "yuv420p"]


def h264_cut(
    source: str, start_s: float, n_frames: int, out: str | Path, crf: int, preset: str, threads: int | None = None
) -> list[str]:
    """ffmpeg command writing `n_frames` frames of `source`'s video from `start_s` to `out` as an
    H.264 mp4 without audio. The seek comes before -i: decoding starts at the keyframe before
    `start_s` and ffmpeg's accurate seek drops what precedes it, instead of decoding `source` from
    its first frame (which made cutting a long input's pieces quadratic in its length)."""
    return [
        *FFMPEG,
        "-ss",
        f"{start_s:.6f}",
        "-i",
        source,
        "-frames:v",
        str(n_frames),
        "-an",
        *h264_output(crf, preset),
        *(["-threads", str(threads)] if threads is not None else []),
        "-f",
        "mp4",
        str(out),
    ]


# The time limit of one call: a base plus this many seconds per second of the media it reads.
TIMEOUT_BASE_S = 60.0
TIMEOUT_PER_MEDIA_S = 10.0
# The first probe of an input, before its duration is known (ffprobe reads headers only).
PROBE_TIMEOUT_S = 120.0

# Signals with which a tool crashes on what it reads: a data error of that input. Any other signal
# was sent to it from outside (the OOM killer, a shutdown), so the input is not to blame.
CRASH_SIGNALS = frozenset({signal.SIGSEGV, signal.SIGBUS, signal.SIGFPE, signal.SIGILL, signal.SIGABRT})

# ffmpeg's words for a fault of the machine or the installation: any of them stops the run.
SYSTEM_MESSAGES = (
    "No space left on device",
    "Disk quota exceeded",
    "Read-only file system",
    "Too many open files",
    "Unknown encoder",
    "Error setting preset",
    # A filter this build lacks (zscale needs ffmpeg built with libzimg): no input would get through.
    "No such filter",
)


def tool_timeout(duration_s: float) -> float:
    """Seconds one ffmpeg call may take on media of `duration_s` seconds."""
    return TIMEOUT_BASE_S + TIMEOUT_PER_MEDIA_S * max(0.0, duration_s)


def run_tool(command: list[str], timeout_s: float, uri: str) -> subprocess.CompletedProcess[str]:
    """Run `command` (ffmpeg or ffprobe) on input `uri` and return its result, failed or not.

    Raises SystemFault for a fault that is not the input's, and InputError `timeout` (the tool is
    killed) or `tool_crashed` for a tool that hangs or crashes on the input.
    """
    tool = command[0]
    try:
        result = subprocess.run(command, capture_output=True, text=True, errors="replace", timeout=timeout_s)
    except FileNotFoundError:
        raise SystemFault(f"{tool} is not installed or not on PATH: install ffmpeg (with ffprobe)") from None
    except PermissionError as error:
        raise SystemFault(f"cannot run {tool}: {error.strerror}") from None
    except subprocess.TimeoutExpired:
        raise InputError("timeout", f"{tool} did not finish within {timeout_s:.0f}s on {uri} and was stopped") from None
    code = result.returncode
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        if -code in CRASH_SIGNALS:
            raise InputError("tool_crashed", f"{tool} crashed with {name} on {uri}: {last_lines(result.stderr)}")
        raise SystemFault(
            f"{tool} was killed by {name} while reading {uri} (out of memory? a shutdown?); "
            "the input is left uncommitted, rerun once this is fixed"
        )
    if code != 0 and any(message in result.stderr for message in SYSTEM_MESSAGES):
        raise SystemFault(f"{tool} failed for a reason that is not the input's ({uri}): {last_lines(result.stderr)}")
    return result


def probe(path: str, uri: str, timeout_s: float = PROBE_TIMEOUT_S, options: tuple[str, ...] = ()) -> dict[str, Any]:
    """ffprobe's JSON description of `path` (the file of input `uri`); InputError `probe_failed`."""
    command = ["ffprobe", *INPUT_OPTIONS, "-show_format", "-show_streams", "-of", "json", *options, path]
    result = run_tool(command, timeout_s, uri)
    if result.returncode != 0:
        raise InputError("probe_failed", f"ffprobe cannot read {uri}: {last_lines(result.stderr)}")
    try:
        return json.loads(result.stdout)
    except ValueError:
        raise InputError("probe_failed", f"ffprobe wrote no description of {uri}") from None


def last_lines(stderr: bytes | str | None, n: int = 3) -> str:
    """The last `n` non-empty lines of a tool's error output, on one line."""
    if isinstance(stderr, bytes):
        stderr = stderr.decode("utf-8", "replace")
    # Decoder context addresses ("[mov @ 0x55d1...]") differ per process; keep messages comparable.
    stderr = re.sub(r" @ 0x[0-9a-f]+", "", stderr or "")
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    return " | ".join(lines[-n:]) or "no error output"
