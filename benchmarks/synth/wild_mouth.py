"""Mouth motion of a faces-wild recording, and the listening frames chosen by it (realistic mode).

Non-speech by the VAD is not enough for a listening frame: in the short pauses between words,
and just before a phrase (a breath), the lips still move, and an active-speaker model rightly
calls that talking while the truth says listening. So every frame of a recording is measured
with MediaPipe's FaceLandmarker (the face stage's wrapper, `stages/faces/landmarks.py`, in VIDEO
mode on the face stage's square crops around the YuNet box, crop side 1.6 x the box, centre
smoothed over 0.2 s, 256 px), and a listener is only ever shown frames whose mouth is still.

Per frame, in units of the distance between the outer eye corners (landmarks 33 and 263, about
9-10 cm on an adult face, so 0.01 is about 1 mm; the ratio does not change with face size):

- `gap`: the inner-lip opening, landmarks 13 (upper) to 14 (lower);
- `width`: the mouth width, corners 61 to 291 (rounding and spreading the lips change it, but so
  do head turns and nods, hence its smaller weight below);
- `step` (between frames i and i+1): |change of gap| + 0.5 |change of width|;
- the blendshapes jawOpen, mouthClose, mouthFunnel and mouthPucker, reported (meta.json) but not
  used to choose: their scale differs a lot between faces (jawOpen of a closed mouth is 0.00 on
  latentsync_demo2 and 0.15 at rest on edtalk_uncrop_Obama), the lip distances much less.

Thresholds, from the distributions over the 12 recordings with enough non-speech (speech frames:
display interval overlaps silero speech, 2725 frames; non-speech: at least 0.04 s from it, 415):

| measure | speech frames q10 / q25 / q50 / q75 / q90 | non-speech q10 / q25 / q50 / q75 / q90 | threshold |
|---|---|---|---|
| gap | 0.009 / 0.030 / 0.081 / 0.119 / 0.150 | 0.003 / 0.014 / 0.089 / 0.118 / 0.155 | closed: <= `CLOSED_GAP` 0.04 |
| step | 0.003 / 0.006 / 0.014 / 0.029 / 0.052 | 0.001 / 0.003 / 0.007 / 0.013 / 0.024 | still: <= `STEP_MAX` 0.012 |
| jawOpen | 0.001 / 0.004 / 0.025 / 0.131 / 0.212 | 0.001 / 0.005 / 0.023 / 0.152 / 0.187 | (reported) |

Non-speech is not more closed than speech, and only somewhat stiller: people pause with the mouth
open (breathing in, a held "uh", the lips already forming the next word), which is the artefact
this module removes. A *still run* is a stretch of consecutive non-speech frames where every
frame has a face, every step is <= STEP_MAX, the gap stays within `GAP_RANGE_MAX` (0.015, about
1.5 mm: no slow opening hidden under small steps, which back-and-forth playback would turn into
an oscillation) and the width within `WIDTH_RANGE_MAX` (0.04), and the gap is at most a cap:
`CLOSED_GAP` (a closed or barely parted mouth; 30 % of speech frames are that closed), or, for a
face whose mouth rests parted (edtalk_uncrop_Obama's lips rest 0.10 apart, teeth showing, and
meet only for m/b/p), the median gap of the recording's own speech frames. At these settings
6 % of the speech frames lie in still runs of >= 0.3 s (real pauses the VAD kept inside a
segment), against 20 % of the non-speech frames.

The listening frames of a recording are its still runs at the first of these levels that has any
(`choose_listening`), each tried at the 0.12 s margin from speech first, then at 0.04 s:

1. ``closed``: runs of >= `MIN_STILL_RUN_S` (0.3 s) with the gap <= CLOSED_GAP;
2. ``rest``: runs of >= 0.3 s with the gap <= the recording's median speaking gap (parted, still);
3. ``sway``: shorter runs (>= `MIN_SWAY_RUN` = 2 frames) at the rest cap: the listener sways back
   and forth over a few still frames (a 2-frame run is a hold with a one-frame sway);
4. none: the recording is left out (`wild.survey_one`), its mouth never rests while it is silent.

The measurements are cached per recording, keyed by the file's sha256, `MOUTH_VERSION` and the
landmarker model's sha256, under
$VOXHEAR_CACHE_DIR/synth-mouth or ~/.cache/voxhear/synth-mouth (`cache_dir`): composing reads
them back in milliseconds; measuring the whole pool takes about 90 s on two cores. The cache is
what composition uses; re-measuring gives the same numbers with the same MediaPipe build
(checked across processes).
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

LANDMARK_MODEL = "mediapipe-face-landmarker"
# The face stage's crop (stages/faces/config.py crop_scale, crop_smooth_s) at the landmarker's input size.
CROP_SCALE = 1.6
CROP_SMOOTH_S = 0.2
# Bump when the measurement changes (it is part of the cache key).
MOUTH_VERSION = "mouth-1"
# Measured on frames decoded at this longer side (the detector's working size), whatever the canvas.
MEASURE_MAX_SIDE = 640
EYE_CORNERS = (33, 263)
INNER_LIPS = (13, 14)
MOUTH_CORNERS = (61, 291)
BLENDSHAPES = ("jawOpen", "mouthClose", "mouthFunnel", "mouthPucker")
CLOSED_GAP = 0.04
STEP_MAX = 0.012
WIDTH_WEIGHT = 0.5  # in `step`
GAP_RANGE_MAX = 0.015
WIDTH_RANGE_MAX = 0.04
MIN_STILL_RUN_S = 0.3
MIN_SWAY_RUN = 2
# (tier, gap cap, long runs only), tried in this order; each at LISTEN_MARGIN_S, then FALLBACK_MARGIN_S.
LEVELS = (("closed", "closed", True), ("rest", "rest", True), ("sway", "rest", False))


@dataclass(frozen=True, slots=True)
class Mouths:
    """Per-frame mouth measurements of one recording (NaN where the landmarker found no face).

    Attributes:
        gap: Inner-lip opening / outer-eye-corner distance.
        width: Mouth width / outer-eye-corner distance.
        blendshapes: {name: scores} for `BLENDSHAPES`.
    """

    gap: np.ndarray
    width: np.ndarray
    blendshapes: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.gap)

    @property
    def jaw_open(self) -> np.ndarray:
        return self.blendshapes["jawOpen"]

    @property
    def step(self) -> np.ndarray:
        """(n - 1,) |change of gap| + WIDTH_WEIGHT |change of width| from frame i to i + 1 (NaN without a face)."""
        return np.abs(np.diff(self.gap)) + WIDTH_WEIGHT * np.abs(np.diff(self.width))


@dataclass(frozen=True, slots=True)
class Listening:
    """How a recording's listening frames were chosen.

    Attributes:
        tier: ``closed``, ``rest`` or ``sway`` (see the module docstring).
        margin_s: The margin the frames keep from speech.
        gap_cap: The largest inner-lip gap allowed.
        runs: [(first, end)) still runs, in frames.
        stats: Means over the listening frames and over the speech frames (`mouth_stats`).
    """

    tier: str
    margin_s: float
    gap_cap: float
    runs: tuple[tuple[int, int], ...]
    stats: dict

    @property
    def n_frames(self) -> int:
        return sum(b - a for a, b in self.runs)

    def describe(self) -> str:
        length = (f">= {MIN_STILL_RUN_S} s" if self.tier != "sway"
                  else f"of {min(b - a for a, b in self.runs)}-{max(b - a for a, b in self.runs)} frames")
        return (f"{self.tier}: still runs {length} with the inner-lip gap <= {self.gap_cap:.3f} "
                f"(eye-corner distances), {self.margin_s} s from speech")


# --- measuring ------------------------------------------------------------------------------


def cache_dir() -> Path:
    """$VOXHEAR_CACHE_DIR/synth-mouth, else ~/.cache/voxhear/synth-mouth ($XDG_CACHE_HOME honoured)."""
    from voxhear.pipeline.models import default_cache_dir

    return default_cache_dir().parent / "synth-mouth"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def mouths_from_landmarks(landmarks: np.ndarray, blendshapes: np.ndarray, names: list[str]) -> Mouths:
    """`Mouths` from (n, 478, 3) landmarks and (n, 52) blendshape scores (NaN rows: no face)."""
    xy = landmarks[:, :, :2].astype(np.float64)
    eyes = np.linalg.norm(xy[:, EYE_CORNERS[0]] - xy[:, EYE_CORNERS[1]], axis=1)
    eyes = np.where(eyes > 1e-6, eyes, np.nan)
    gap = np.linalg.norm(xy[:, INNER_LIPS[0]] - xy[:, INNER_LIPS[1]], axis=1) / eyes
    width = np.linalg.norm(xy[:, MOUTH_CORNERS[0]] - xy[:, MOUTH_CORNERS[1]], axis=1) / eyes
    shapes = {}
    for name in BLENDSHAPES:
        shapes[name] = (blendshapes[:, names.index(name)].astype(np.float64) if name in names
                        else np.full(len(gap), np.nan))
    return Mouths(gap, width, shapes)


def measure_mouths(path: Path, size: tuple[int, int], fps: float, media_dir: Path) -> Mouths:
    """Run the landmarker over every frame of a recording (see the module docstring); uncached."""
    import cv2

    from voxhear.benchmarks.synth import wild
    from voxhear.stages.faces.crop import crop_square
    from voxhear.stages.faces.detect import make_detector
    from voxhear.stages.faces.landmarks import LANDMARK_INPUT, N_BLENDSHAPES, N_LANDMARKS, LandmarkTracker
    from voxhear.stages.faces.track import square_crop_boxes

    store = wild.model_store(media_dir)
    frames = wild.decode_frames(path, size, MEASURE_MAX_SIDE)
    detector = make_detector(wild.DETECTOR, store, wild.DETECT_SCORE, wild.DETECT_NMS, MEASURE_MAX_SIDE, threads=1)
    boxes, _ = wild.detect_boxes(frames, detector)
    crops = square_crop_boxes(boxes, CROP_SCALE, CROP_SMOOTH_S * fps)
    landmarks = np.full((len(frames), N_LANDMARKS, 3), np.nan, np.float32)
    shapes = np.full((len(frames), N_BLENDSHAPES), np.nan, np.float32)
    with LandmarkTracker(store.resolve(LANDMARK_MODEL).path) as marker:
        marker.begin()
        for i, frame in enumerate(frames):
            crop = cv2.cvtColor(crop_square(frame, crops[i], LANDMARK_INPUT), cv2.COLOR_BGR2RGB)
            mesh = marker.process(crop, round(i * 1000 / fps))
            if mesh is not None:
                landmarks[i], shapes[i] = mesh.landmarks, mesh.blendshapes
        names = list(marker.blendshape_names)
    return mouths_from_landmarks(landmarks, shapes, names)


def load_mouths(path: Path, size: tuple[int, int], fps: float, media_dir: Path) -> Mouths:
    """`measure_mouths`, read from the cache when it holds this file (by sha256), else measured and stored."""
    from voxhear.benchmarks.synth.wild import model_store

    path = Path(path)
    model = model_store(media_dir).spec(LANDMARK_MODEL).files[0].sha256
    key = f"{_sha256(path)}-{MOUTH_VERSION}-{model[:12]}"
    cached = cache_dir() / f"{key}.npz"
    if cached.is_file():
        try:
            with np.load(cached, allow_pickle=False) as data:
                return Mouths(data["gap"], data["width"], {n: data[n] for n in BLENDSHAPES})
        except (OSError, KeyError, ValueError) as err:
            log.warning("unreadable mouth cache %s (%s): measuring again", cached, err)
    mouths = measure_mouths(path, size, fps, media_dir)
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        partial = cached.with_name(f".{key}.{os.getpid()}.npz")
        np.savez(partial, gap=mouths.gap, width=mouths.width, **mouths.blendshapes)
        os.replace(partial, cached)
    except OSError as err:
        log.warning("could not cache the mouth measurements of %s in %s: %s", path.name, cached.parent, err)
    return mouths


# --- choosing -------------------------------------------------------------------------------


def still_runs(candidates: np.ndarray, mouths: Mouths, gap_cap: float) -> list[tuple[int, int]]:
    """Maximal runs [(first, end)) of candidate frames with a still mouth (module docstring),
    grown greedily from the first frame: a frame that breaks a run starts the next one."""
    gap, width, step = mouths.gap, mouths.width, mouths.step
    ok = candidates & np.isfinite(gap) & np.isfinite(width) & (np.nan_to_num(gap, nan=np.inf) <= gap_cap)
    runs: list[tuple[int, int]] = []
    i, n = 0, len(gap)
    while i < n:
        if not ok[i]:
            i += 1
            continue
        j = i + 1
        g_lo = g_hi = gap[i]
        w_lo = w_hi = width[i]
        while j < n and ok[j] and step[j - 1] <= STEP_MAX:
            g_lo, g_hi = min(g_lo, gap[j]), max(g_hi, gap[j])
            w_lo, w_hi = min(w_lo, width[j]), max(w_hi, width[j])
            if g_hi - g_lo > GAP_RANGE_MAX or w_hi - w_lo > WIDTH_RANGE_MAX:
                break
            j += 1
        runs.append((i, j))
        i = j
    return runs


def mean_of(values: np.ndarray) -> float | None:
    values = values[np.isfinite(values)]
    return round(float(values.mean()), 4) if len(values) else None


def mouth_stats(mouths: Mouths, frames: np.ndarray, steps: np.ndarray) -> dict:
    """Mean jawOpen, inner-lip gap and step over the given frames and steps (None when empty)."""
    return {"jaw_open": mean_of(mouths.jaw_open[frames]), "lip_gap": mean_of(mouths.gap[frames]),
            "step": mean_of(mouths.step[steps])}


def choose_listening(listening_at, speaking: np.ndarray, mouths: Mouths, fps: float,
                     margins: tuple[float, ...]) -> Listening | None:
    """The listening frames of a recording (module docstring), or None when its mouth never rests.

    Args:
        listening_at: margin -> per-frame bool: non-speech at that margin (`wild.listening_frames`).
        speaking: Per-frame bool: the frame's display interval overlaps speech.
        mouths: The recording's measurements.
        fps: Its frame rate.
        margins: The margins to try, in order of preference.
    """
    speech_gap = mouths.gap[speaking & np.isfinite(mouths.gap)]
    caps = {"closed": CLOSED_GAP,
            "rest": max(CLOSED_GAP, float(np.median(speech_gap)) if len(speech_gap) else CLOSED_GAP)}
    long = max(MIN_SWAY_RUN, math.ceil(MIN_STILL_RUN_S * fps - 1e-9))
    for tier, cap, long_only in LEVELS:
        for margin in margins:
            runs = still_runs(listening_at(margin), mouths, caps[cap])
            runs = [(a, b) for a, b in runs if b - a >= (long if long_only else MIN_SWAY_RUN)]
            if runs:
                return Listening(tier, margin, caps[cap], tuple(runs), _stats(mouths, runs, speaking))
    return None


def _stats(mouths: Mouths, runs: list[tuple[int, int]], speaking: np.ndarray) -> dict:
    listen = np.zeros(len(mouths), bool)
    listen_steps = np.zeros(len(mouths) - 1, bool)
    for a, b in runs:
        listen[a:b] = True
        listen_steps[a:b - 1] = True
    return {"listening": mouth_stats(mouths, listen, listen_steps),
            "speaking": mouth_stats(mouths, speaking, speaking[1:] & speaking[:-1])}
