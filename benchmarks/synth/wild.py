"""Real people for the realistic mode (`voxhear synth --people-source wild`).

A person is one single-person recording of `faces-wild/` with its own voice, frames, frame rate
and size. Everything about it is found at compose time, from the recording alone, and nothing
derived from it is stored (the footage belongs to third parties):

- speech: silero-vad with fixed parameters (`SILERO`) on the recording's 16 kHz mono audio. The
  energy rule of `vad.py` fits GRID's quiet studio, not these recordings (music beds, a
  restaurant, TV noise: on pcavs_Audio_Source_00015 it finds 0.2 s of speech in 7 s).
- listening frames: video frames of non-speech whose mouth is still (`wild_mouth.py`): a frame's
  whole display interval lies at least `LISTEN_MARGIN_S` (else `FALLBACK_MARGIN_S`) away from any
  speech (lips move just before and after the voice), and MediaPipe's landmarks show the lips
  neither moving nor opening over a run of such frames. A recording with less than
  `MIN_NON_SPEECH_S` of non-speech frames at FALLBACK_MARGIN_S, or with no still run among them,
  is left out of the pool with its reason logged (`survey`).
- face boxes: YuNet, the face stage's detector (calibrated onto the dataset's box convention),
  on every frame at the working resolution; one face per frame is kept (the one overlapping the
  recording's median box most), frames without a detection get the box interpolated between
  the nearest detected frames.
- frames are decoded once at a working resolution: shrunk (never enlarged) so that the longer
  side is at most `work_max_side` (640 for canvases up to 640 px: what the detector looks at).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import subprocess
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from voxhear.benchmarks.synth import media, vad
from voxhear.benchmarks.synth.options import SAMPLE_RATE
from voxhear.benchmarks.synth.wild_mouth import Listening, Mouths, choose_listening, load_mouths

log = logging.getLogger(__name__)

WILD_DIR = "faces-wild"
# Recordings that show two people (shared/media/faces-wild/SOURCES.md): never a person.
TWO_PERSON = {
    "visualvoice_interview.mp4": "two people on screen (TV split-screen interview)",
    "ghost_2person.mp4": "two people on screen (split-screen video call)",
}
# silero-vad's get_speech_timestamps parameters (its defaults, written out so that a new
# silero-vad release cannot change them silently).
SILERO = {"threshold": 0.5, "min_speech_duration_ms": 250, "min_silence_duration_ms": 100, "speech_pad_ms": 30}
LISTEN_MARGIN_S = 0.12
FALLBACK_MARGIN_S = 0.04
# Recordings with less non-speech than this (in runs of >= MIN_LISTEN_RUN frames, FALLBACK_MARGIN_S
# from speech) are left out without looking at them.
MIN_NON_SPEECH_S = 0.3
MIN_LISTEN_RUN = 3
WORK_MAX_SIDE = 640
# Backchannel snippets: short speech of the person's own recording.
SNIPPET_S = (0.25, 0.6)
# Face detection as the face stage does it by default (stages/faces/config.py).
DETECTOR = "yunet"
DETECT_SCORE = 0.5
DETECT_NMS = 0.3


@dataclass(frozen=True, slots=True)
class Candidate:
    """What the survey found out about one faces-wild recording.

    Attributes:
        name: File name, e.g. ``edtalk_uncrop_Obama.mp4``.
        fps: Frame rate of the recording.
        n_frames: Video frames (packets) in the recording.
        size: (width, height) in pixels.
        speech_s: Seconds of speech (silero-vad).
        listen_s: Seconds of listening frames (non-speech at FALLBACK_MARGIN_S when not looked at).
        margin_s: The listening margin used (None when excluded or not looked at).
        tier: How the listening frames were chosen: ``closed``, ``rest`` or ``sway``
            (`wild_mouth.LEVELS`), ``excluded``, or ``heard`` (enough non-speech; mouths not looked at).
        reason: How the listening frames were chosen, or why it is excluded.
        listening: The chosen listening frames (None unless closed, rest or sway).
    """

    name: str
    fps: float
    n_frames: int
    size: tuple[int, int]
    speech_s: float
    listen_s: float
    margin_s: float | None
    tier: str
    reason: str
    listening: Listening | None = None

    @property
    def usable(self) -> bool:
        return self.listening is not None


@dataclass(slots=True)
class Voice:
    """A recording's audio (mono 16 kHz float32) with its silero speech.

    Attributes:
        path: The source file.
        audio: The samples.
        speech: Per-sample speech mask (silero-vad segments).
        segments: [(start, end)] speech segments in samples.
        levels: Window levels in dB every 10 ms (`vad.window_db`): where turns may be cut.
    """

    path: Path
    audio: np.ndarray
    speech: np.ndarray
    segments: list[tuple[int, int]]
    levels: np.ndarray


@dataclass(slots=True)
class WildPerson(Voice):
    """One on-screen person of the realistic mode (see the module docstring).

    Attributes:
        fps: The recording's frame rate.
        source_size: (width, height) of the recording.
        frames: BGR frames at the working resolution, (n, h, w, 3) uint8.
        listen_margin_s: The margin its listening frames keep from speech.
        tier: ``closed``, ``rest`` or ``sway`` (`Candidate.tier`).
        listen_runs: [(first, end)) still runs of listening frames (`wild_mouth.still_runs`).
        listening: How they were chosen, with the mouth statistics (`wild_mouth.Listening`).
        mouths: Per-frame mouth measurements (`wild_mouth.Mouths`).
        boxes: (n, 4) float64 face box per frame, working pixels (x1, y1, x2, y2).
        detected: (n,) bool: the box was detected in that frame (else interpolated).
        snippets: [(start, end)] short speech pieces in samples, for backchannels.
    """

    fps: float = 25.0
    source_size: tuple[int, int] = (0, 0)
    frames: np.ndarray | None = None
    listen_margin_s: float = LISTEN_MARGIN_S
    tier: str = "closed"
    listen_runs: list[tuple[int, int]] | None = None
    listening: Listening | None = None
    mouths: Mouths | None = None
    boxes: np.ndarray | None = None
    detected: np.ndarray | None = None
    snippets: list[tuple[int, int]] | None = None

    @property
    def name(self) -> str:
        return self.path.stem

    @property
    def n_frames(self) -> int:
        assert self.frames is not None
        return len(self.frames)

    @property
    def work_size(self) -> tuple[int, int]:
        assert self.frames is not None
        return int(self.frames.shape[2]), int(self.frames.shape[1])

    def frame_at(self, seconds: float) -> int:
        """The frame on display at `seconds` of the recording (clamped to the video)."""
        return int(min(self.n_frames - 1, max(0, np.floor(seconds * self.fps + 1e-9))))

    def face_region(self) -> tuple[float, float, float, float]:
        """The union of the face boxes over the whole recording (working pixels)."""
        assert self.boxes is not None
        return (float(self.boxes[:, 0].min()), float(self.boxes[:, 1].min()),
                float(self.boxes[:, 2].max()), float(self.boxes[:, 3].max()))

    def face_height(self) -> float:
        assert self.boxes is not None
        return float(np.median(self.boxes[:, 3] - self.boxes[:, 1]))


# --- speech -------------------------------------------------------------------------------


@functools.cache
def _silero_model():
    from silero_vad import load_silero_vad

    # The ONNX model on one onnxruntime thread (silero's wrapper sets it): the same result on
    # every run, and no torch thread pool in play.
    return load_silero_vad(onnx=True)


def silero_segments(audio: np.ndarray) -> list[tuple[int, int]]:
    """Speech segments [(start, end)) in samples of 16 kHz mono audio, by silero-vad (`SILERO`)."""
    import torch
    from silero_vad import get_speech_timestamps

    if len(audio) == 0:
        return []
    found = get_speech_timestamps(torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32)),
                                  _silero_model(), sampling_rate=SAMPLE_RATE, **SILERO)
    return [(int(s["start"]), min(len(audio), int(s["end"]))) for s in found]


@functools.lru_cache(maxsize=64)
def load_voice(path: Path) -> Voice:
    """A recording's audio and its silero speech (the off-screen voice, or a person's sound)."""
    audio = media.decode_audio(Path(path))
    if len(audio) == 0:
        raise ValueError(f"{path}: no audio")
    segments = silero_segments(audio)
    return Voice(path=Path(path), audio=audio, speech=vad.segments_to_mask(segments, len(audio)),
                 segments=segments, levels=vad.window_db(audio))


def listening_frames(speech: np.ndarray, fps: float, n_frames: int, margin_s: float) -> np.ndarray:
    """Per video frame: its display interval lies at least `margin_s` away from any speech sample."""
    starts = np.floor(np.arange(n_frames) / fps * SAMPLE_RATE).astype(np.int64)
    ends = np.floor(np.arange(1, n_frames + 1) / fps * SAMPLE_RATE).astype(np.int64)
    margin = int(round(margin_s * SAMPLE_RATE))
    # Prefix sums of speech, with everything beyond the audio counted as silence.
    cumulative = np.concatenate(([0], np.cumsum(speech.astype(np.int64))))
    lo = np.clip(starts - margin, 0, len(speech))
    hi = np.clip(ends + margin, 0, len(speech))
    return (cumulative[hi] - cumulative[lo]) == 0


def listen_runs(listening: np.ndarray, min_run: int = MIN_LISTEN_RUN) -> list[tuple[int, int]]:
    return [(a, b) for a, b in vad.mask_to_segments(listening) if b - a >= min_run]


def snippets(voice: Voice) -> list[tuple[int, int]]:
    """Short speech pieces for backchannels: short segments, or a segment's first word or two.

    Speech segments of SNIPPET_S length are taken whole; a longer segment gives its beginning up
    to the quietest 10 ms window between SNIPPET_S[0] and SNIPPET_S[1] after its start (a pause
    between syllables or words), if the rest of the segment keeps at least SNIPPET_S[0].
    """
    lo, hi = (int(round(v * SAMPLE_RATE)) for v in SNIPPET_S)
    out = []
    for start, end in voice.segments:
        if end - start <= hi:
            if end - start >= lo:
                out.append((start, end))
            continue
        first, last = (start + lo) // vad.HOP, min(start + hi, end - lo) // vad.HOP
        if last <= first:
            continue
        hop = first + int(np.argmin(voice.levels[first:last + 1]))
        out.append((start, hop * vad.HOP))
    return out


# --- the pool -----------------------------------------------------------------------------


def probe_video(path: Path) -> tuple[float, int, tuple[int, int]]:
    """(fps, frame count, (width, height)) of a recording's first video stream."""
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-count_packets",
                          "-show_entries", "stream=width,height,r_frame_rate,nb_read_packets",
                          "-of", "json", str(path)], capture_output=True, check=True).stdout
    stream = json.loads(out)["streams"][0]
    return (float(Fraction(stream["r_frame_rate"])), int(stream["nb_read_packets"]),
            (int(stream["width"]), int(stream["height"])))


@functools.lru_cache(maxsize=64)
def survey_one(path: Path, look: bool = True) -> Candidate:
    """Whether one recording can be a person, and which of its frames it listens with.

    Args:
        path: The recording.
        look: Measure the mouths and choose the listening frames (`wild_mouth`); without it only
            the sound is surveyed (tier ``heard`` or ``excluded``), which is all a voice needs.
    """
    path = Path(path)
    fps, n_frames, size = probe_video(path)
    if path.name in TWO_PERSON:
        return Candidate(path.name, fps, n_frames, size, 0.0, 0.0, None, "excluded", TWO_PERSON[path.name])
    voice = load_voice(path)
    speech_s = float(voice.speech.sum()) / SAMPLE_RATE
    at = functools.cache(lambda margin: listening_frames(voice.speech, fps, n_frames, margin))
    quiet = sum(b - a for a, b in listen_runs(at(FALLBACK_MARGIN_S))) / fps
    if quiet < MIN_NON_SPEECH_S:
        return Candidate(path.name, fps, n_frames, size, speech_s, quiet, None, "excluded",
                         f"only {quiet:.2f} s of non-speech even {FALLBACK_MARGIN_S} s from speech "
                         f"(needs {MIN_NON_SPEECH_S} s to listen with)")
    if not look:
        return Candidate(path.name, fps, n_frames, size, speech_s, quiet, None, "heard", "")
    mouths = load_mouths(path, size, fps, path.parent.parent)
    # One measurement per decoded frame (the count load_person decodes, which may differ from the packets).
    seen = functools.cache(lambda margin: listening_frames(voice.speech, fps, len(mouths), margin))
    chosen = choose_listening(seen, ~seen(0.0), mouths, fps, (LISTEN_MARGIN_S, FALLBACK_MARGIN_S))
    if chosen is None:
        return Candidate(path.name, fps, n_frames, size, speech_s, 0.0, None, "excluded",
                         f"the mouth never rests in its {quiet:.2f} s of non-speech (no still run)")
    return Candidate(path.name, fps, n_frames, size, speech_s, chosen.n_frames / fps, chosen.margin_s,
                     chosen.tier, chosen.describe(), chosen)


def survey(media_dir: Path, look: bool = True) -> list[Candidate]:
    """Every recording of faces-wild/, sorted by name, with whether and how it can be a person
    (`look=False`: by its sound only, see `survey_one`)."""
    folder = Path(media_dir) / WILD_DIR
    return [survey_one(p, look) for p in sorted(folder.glob("*.mp4"))]


def wild_pool(media_dir: Path, names: str = "") -> list[Candidate]:
    """The usable people, sorted by name (the seed's draw order), optionally restricted to `names`.

    Args:
        media_dir: The shared media folder.
        names: Comma-separated file stems (or names) to keep; empty keeps every usable one.

    Raises:
        ValueError: A named recording does not exist or cannot be a person (the reason is given).
    """
    folder = Path(media_dir) / WILD_DIR
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    if not wanted:
        candidates = survey(media_dir)
        for c in candidates:
            if not c.usable:
                log.info("faces-wild/%s is not used as a person: %s", c.name, c.reason)
            else:
                log.info("faces-wild/%s listens with %s", c.name, c.reason)
        return [c for c in candidates if c.usable]
    pool = []
    for name in wanted:
        path = folder / (name if name.endswith(".mp4") else f"{name}.mp4")
        if not path.is_file():
            raise ValueError(f"wild_people: no {path.name} in {folder}")
        c = survey_one(path)
        if not c.usable:
            raise ValueError(f"wild_people: {c.name} cannot be a person: {c.reason}")
        if c not in pool:
            pool.append(c)
    return sorted(pool, key=lambda c: c.name)


# --- a person, decoded --------------------------------------------------------------------


def model_store(media_dir: Path):
    """The model store: $VOXHEAR_MODEL_DIR, else `models/` beside the media folder (shared/models)."""
    from voxhear.pipeline.models import ModelStore

    if os.environ.get("VOXHEAR_MODEL_DIR"):
        return ModelStore()
    beside = Path(media_dir).parent / "models"
    return ModelStore(store_dir=str(beside) if (beside / "MODELS.tsv").is_file() else None)


def decode_frames(path: Path, size: tuple[int, int], max_side: int) -> np.ndarray:
    """All frames as BGR uint8, shrunk (never enlarged) so that the longer side is <= max_side."""
    w, h = size
    scale = min(1.0, max_side / max(w, h))
    tw, th = (w, h) if scale >= 1.0 else (max(2, round(w * scale)), max(2, round(h * scale)))
    args = ["-i", str(path), "-map", "0:v:0"]
    if (tw, th) != (w, h):
        args += ["-vf", f"scale={tw}:{th}:flags=area"]
    raw = media._run([*args, "-f", "rawvideo", "-pix_fmt", "bgr24", "-"])
    frame_bytes = tw * th * 3
    if not raw or len(raw) % frame_bytes:
        raise ValueError(f"{path}: decoded {len(raw)} bytes, not whole {tw}x{th} frames")
    return np.frombuffer(raw, np.uint8).reshape(-1, th, tw, 3)


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    x1 = np.maximum(box[0], boxes[:, 0])
    y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[2], boxes[:, 2])
    y2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])  # noqa: E731
    return inter / np.maximum(area(box) + area(boxes) - inter, 1e-9)


def detect_boxes(frames: np.ndarray, detector) -> tuple[np.ndarray, np.ndarray]:
    """One face box per frame (see the module docstring) and whether it was detected there."""
    found = [detector.detect(f) for f in frames]
    best = [d.boxes[int(np.argmax(d.scores))] for d in found if len(d)]
    if not best:
        raise ValueError("no face found in any frame")
    median = np.median(np.asarray(best, np.float64), axis=0)
    boxes = np.zeros((len(frames), 4), np.float64)
    detected = np.zeros(len(frames), bool)
    for i, d in enumerate(found):
        if len(d):
            overlap = _iou(median, d.boxes.astype(np.float64))
            if overlap.max() > 0.1:
                boxes[i] = d.boxes[int(np.argmax(overlap))]
                detected[i] = True
    if not detected.any():
        raise ValueError("no face near the median face box")
    index = np.arange(len(frames))
    for k in range(4):
        boxes[:, k] = np.interp(index, index[detected], boxes[detected, k])
    return boxes, detected


@functools.lru_cache(maxsize=3)
def load_person(media_dir: Path, name: str, work_max_side: int = WORK_MAX_SIDE) -> WildPerson:
    """Decode one faces-wild recording (`name` is its file name) and find what a person needs."""
    from voxhear.stages.faces.detect import make_detector

    path = Path(media_dir) / WILD_DIR / name
    candidate = survey_one(path)
    if not candidate.usable:
        raise ValueError(f"{path} cannot be a person: {candidate.reason}")
    voice = load_voice(path)
    frames = decode_frames(path, candidate.size, work_max_side)
    detector = make_detector(DETECTOR, model_store(media_dir), DETECT_SCORE, DETECT_NMS,
                             max(WORK_MAX_SIDE, work_max_side), threads=1)
    try:
        boxes, detected = detect_boxes(frames, detector)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from err
    listening = candidate.listening
    assert listening is not None and candidate.margin_s is not None
    mouths = load_mouths(path, candidate.size, candidate.fps, Path(media_dir))
    if len(mouths) != len(frames) or listening.runs[-1][1] > len(frames):
        raise ValueError(f"{path}: {len(frames)} frames decoded, {len(mouths)} measured")
    return WildPerson(path=path, audio=voice.audio, speech=voice.speech, segments=voice.segments,
                      levels=voice.levels, fps=candidate.fps, source_size=candidate.size, frames=frames,
                      listen_margin_s=candidate.margin_s, tier=candidate.tier, listen_runs=list(listening.runs),
                      listening=listening, mouths=mouths, boxes=boxes, detected=detected, snippets=snippets(voice))


def main() -> None:
    """Print which faces-wild recordings can be people, and why not (`python -m ...synth.wild [MEDIA]`)."""
    import sys

    from voxhear.benchmarks.synth.options import default_media_dir

    media_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else default_media_dir()
    print(f"{'recording':36s} {'fps':>6s} {'size':>10s} {'frames':>6s} {'speech':>7s} {'listen':>7s} "
          f"{'jawOpen listen/speech':>21s}  tier")
    for c in survey(media_dir):
        size = f"{c.size[0]}x{c.size[1]}"
        jaw = ""
        if c.listening is not None:
            stats = c.listening.stats
            jaw = f"{stats['listening']['jaw_open']:.3f} / {stats['speaking']['jaw_open']:.3f}"
        print(f"{c.name:36s} {c.fps:6.2f} {size:>10s} {c.n_frames:6d} {c.speech_s:6.2f}s {c.listen_s:6.2f}s "
              f"{jaw:>21s}  {c.reason if c.listening is not None else c.tier + ': ' + c.reason}")


if __name__ == "__main__":
    main()
