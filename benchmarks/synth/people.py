"""The recordings a composed video is made of: GRID face clips, extra voices and backgrounds."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from voxhear.benchmarks.synth import media, vad
from voxhear.benchmarks.synth.options import SAMPLES_PER_SLOT

GRID_SIZE = (360, 288)
GRID_FRAMES = 75
# Lips move a little before the voice starts and after it stops: frames this close to speech
# are neither used as listening frames nor cut off a spoken part.
LIP_MARGIN_FRAMES = 3
# Ping-pong over fewer frames than this would look like a stutter; use both silent ends then.
MIN_SILENT_RUN = 8
# Package data (see package-data in pyproject.toml): found in a checkout and an installed wheel alike.
FACE_BOXES_JSON = resources.files("voxhear.benchmarks.synth").joinpath("grid_face_boxes.json")


@dataclass(slots=True)
class GridClip:
    """One GRID speaker: 3 s of frontal face video with its own voice.

    Attributes:
        name: The GRID file stem, e.g. ``bbaf2n``.
        path: The source file.
        frames: BGR frames, shape (75, 288, 360, 3).
        audio: Mono 16 kHz float32, exactly 75 * 640 samples (frame-aligned).
        speech: Per-sample speech mask of `audio` (the rule in `voxhear.benchmarks.synth.vad`).
        face_box: Hand-annotated face box in source pixels (x1, y1, x2, y2).
        words: The spoken words (GRID's transcript; no word times exist).
        spoken: [first, end) source frames of the spoken part, with lip margins.
        silent: Source frames with closed, still lips, in the order they are ping-ponged.
    """

    name: str
    path: Path
    frames: np.ndarray
    audio: np.ndarray
    speech: np.ndarray
    face_box: tuple[float, float, float, float]
    words: list[str]
    spoken: tuple[int, int]
    silent: list[int]

    def listening_frame(self, step: int) -> int:
        """Source frame for the `step`-th listening slot: back and forth over the silent frames.

        Never the same frame twice in a row, so a listener is never a frozen picture.
        """
        n = len(self.silent)
        if n == 1:
            return self.silent[0]
        period = 2 * (n - 1)
        phase = step % period
        return self.silent[phase if phase < n else period - phase]


@dataclass(slots=True)
class Recording:
    """An audio-only recording (off-screen voice or background), mono 16 kHz float32."""

    path: Path
    audio: np.ndarray
    speech: np.ndarray | None = None


class MediaLibrary:
    """The shared media folder, decoded lazily: a video only pays for the recordings it uses."""

    def __init__(self, media_dir: Path, speech_files: tuple[str, ...], background_files: tuple[str, ...]) -> None:
        self.media_dir = Path(media_dir)
        self.grid_names = grid_names(self.media_dir)
        self.speech_names = sorted(n for n in speech_files if (self.media_dir / "speech" / n).exists())
        self.background_names = sorted(n for n in background_files
                                       if (self.media_dir / "background" / n).exists())

    def grid(self, name: str) -> GridClip:
        return load_grid_clip(self.media_dir, name)

    def speech(self, name: str) -> Recording:
        return load_recording(self.media_dir / "speech" / name, True)

    def background(self, name: str) -> Recording:
        return load_recording(self.media_dir / "background" / name, False)


def grid_names(media_dir: Path) -> list[str]:
    """GRID clips that have both a file and a face box, sorted (the draw order of the seed)."""
    boxes = json.loads(FACE_BOXES_JSON.read_text())["boxes"]
    return sorted(n for n in boxes if (Path(media_dir) / "faces-grid" / f"{n}.mpg").exists())


def read_transcripts(media_dir: Path) -> dict[str, list[str]]:
    table = Path(media_dir) / "faces-grid" / "transcripts.tsv"
    words: dict[str, list[str]] = {}
    if table.exists():
        for line in table.read_text(encoding="utf-8").splitlines()[1:]:
            if "\t" in line:
                name, text = line.split("\t", 1)
                words[Path(name).stem] = text.split()
    return words


@functools.lru_cache(maxsize=16)
def load_grid_clip(media_dir: Path, name: str) -> GridClip:
    """Decode one GRID clip and find its spoken and silent frames."""
    path = Path(media_dir) / "faces-grid" / f"{name}.mpg"
    frames = media.decode_video(path, *GRID_SIZE)
    if len(frames) < GRID_FRAMES:
        raise ValueError(f"{path}: {len(frames)} frames, expected {GRID_FRAMES}")
    frames = frames[:GRID_FRAMES]
    n_samples = GRID_FRAMES * SAMPLES_PER_SLOT
    # The MP2 track decodes 22 ms short of the video; the missing tail is silence.
    audio = _fit(media.decode_audio(path), n_samples)
    speech = vad.speech_mask(audio)
    spans = vad.clean_segments(speech)
    if not spans:
        raise ValueError(f"{path}: no speech found")
    onset = spans[0][0] // SAMPLES_PER_SLOT
    offset = -(-spans[-1][1] // SAMPLES_PER_SLOT)
    first, end = max(0, onset - LIP_MARGIN_FRAMES), min(GRID_FRAMES, offset + LIP_MARGIN_FRAMES)
    leading, trailing = list(range(0, first)), list(range(end, GRID_FRAMES))
    silent = max(leading, trailing, key=len)
    if len(silent) < MIN_SILENT_RUN:
        silent = leading + trailing
    if not silent:
        raise ValueError(f"{path}: no silent frames to show a listener with")
    box = json.loads(FACE_BOXES_JSON.read_text())["boxes"][name]
    return GridClip(name=name, path=path, frames=frames, audio=audio, speech=speech,
                    face_box=tuple(float(v) for v in box), words=read_transcripts(media_dir).get(name, []),
                    spoken=(first, end), silent=silent)


@functools.lru_cache(maxsize=32)
def load_recording(path: Path, with_speech: bool = False) -> Recording:
    audio = media.decode_audio(path)
    if len(audio) == 0:
        raise ValueError(f"{path}: no audio")
    return Recording(path=Path(path), audio=audio, speech=vad.speech_mask(audio) if with_speech else None)


def _fit(audio: np.ndarray, length: int) -> np.ndarray:
    out = np.zeros(length, dtype=np.float32)
    out[: min(length, len(audio))] = audio[:length]
    return out

