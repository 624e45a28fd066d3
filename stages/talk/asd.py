"""Active-speaker scores for one face track with Light-ASD.

Inputs are prepared the way the released model was trained: a square crop around the face
box with extra room below the face (the mouth and chin matter), resized to 224, converted to
grayscale and cut to the central 112x112; 13 MFCCs at 100 Hz from 16 kHz audio (25 ms windows,
10 ms hop). Scores are averaged over several window lengths so that no frame depends on where
one window happens to start.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import cv2
import numpy as np
import torch
from python_speech_features import mfcc as compute_mfcc
from scipy.signal import medfilt

from voxhear.stages.talk.light_asd import LightASD

FPS = 25
MFCC_PER_FRAME = 4
# MFCC analysis window and hop in 16 kHz samples (25 ms, 10 ms).
MFCC_WINDOW, MFCC_HOP = 400, 160
# The encoders run over windows of this many frames plus context on each side, of which the
# centre is kept. Their temporal reach is 6 frames (visual: three blocks of 5-frame kernels; audio:
# about 4), so 10 frames of context leave the features as the whole track's, to float rounding
# (tests/stages/talk/test_streaming.py). A window's activations dominate the stage's memory
# (about 3.7 MB per frame on onnxruntime): 5 s windows hold it near 0.55 GB, 10 s ones took 1 GB.
ENCODE_WINDOW_FRAMES = 5 * FPS
ENCODE_CONTEXT_FRAMES = 10
# Room around the face box (share of the half-size), and the median window that steadies it.
CROP_MARGIN = 0.4
BOX_SMOOTHING_FRAMES = 13
# Window lengths (seconds) whose scores are averaged; repeated lengths weigh them more.
WINDOW_SECONDS = (1, 1, 1, 2, 2, 2, 3, 3, 4, 5, 6)


def crop_geometry(boxes: np.ndarray) -> np.ndarray:
    """(T, 4) x1,y1,x2,y2 boxes -> (T, 3) half-size, centre x, centre y, steadied by a median filter."""
    half = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) / 2
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    if len(boxes) >= BOX_SMOOTHING_FRAMES:
        half, cx, cy = (medfilt(v, BOX_SMOOTHING_FRAMES) for v in (half, cx, cy))
    return np.stack([half, cx, cy], axis=1)


def face_crop(frame: np.ndarray, geometry: np.ndarray) -> np.ndarray:
    """One BGR frame and its (half, cx, cy) -> the (112, 112) uint8 grayscale model input."""
    s, cx, cy = (float(v) for v in geometry)
    pad = int(s * (1 + 2 * CROP_MARGIN)) + 1
    padded = cv2.copyMakeBorder(frame, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(110, 110, 110))
    y, x = cy + pad, cx + pad
    top, bottom = int(y - s), int(y + s * (1 + 2 * CROP_MARGIN))
    left, right = int(x - s * (1 + CROP_MARGIN)), int(x + s * (1 + CROP_MARGIN))
    face = cv2.resize(padded[top:bottom, left:right], (224, 224))
    return cv2.cvtColor(face, cv2.COLOR_BGR2GRAY)[56:168, 56:168]


def face_crops(frames: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(T, H, W, 3) uint8 frames and (T, 4) x1,y1,x2,y2 boxes -> (T, 112, 112) uint8 grayscale."""
    geometry = crop_geometry(boxes)
    crops = np.empty((len(frames), 112, 112), np.uint8)
    for i, frame in enumerate(frames):
        crops[i] = face_crop(frame, geometry[i])
    return crops


def mfcc_features(audio_16k: np.ndarray) -> np.ndarray:
    """Float or int16 mono 16 kHz audio -> (N, 13) MFCCs at 100 Hz."""
    if audio_16k.dtype != np.int16:
        audio_16k = np.clip(audio_16k * 32768.0, -32768, 32767).astype(np.int16)
    return compute_mfcc(audio_16k, 16000, numcep=13, winlen=0.025, winstep=0.010)


def mfcc_count(n_samples: int) -> int:
    """How many MFCC rows `mfcc_features` gives for `n_samples` samples (the last one zero-padded)."""
    return 1 if n_samples <= MFCC_WINDOW else 1 + math.ceil((n_samples - MFCC_WINDOW) / MFCC_HOP)


def mfcc_rows(read_audio: Callable[[int, int], np.ndarray], n_samples: int, first: int, stop: int) -> np.ndarray:
    """MFCC rows [first, stop) of an `n_samples`-sample signal, from only the samples they cover.

    `read_audio(a, b)` gives samples [a, b). Row m covers samples [m*160, m*160 + 400) after the
    pre-emphasis filter, which reaches one sample back: a later span starts one hop early and drops
    its first row, so every row equals the whole signal's (the last ones are zero-padded alike).
    """
    lead = 1 if first > 0 else 0
    start = (first - lead) * MFCC_HOP
    end = min(n_samples, (stop - 1) * MFCC_HOP + MFCC_WINDOW)
    return mfcc_features(read_audio(start, end))[lead : lead + stop - first]


def encode_windows(frames: int) -> list[tuple[int, int, int, int]]:
    """(lo, a, b, hi) per encoder run: frames [lo, hi) go in, the features of [a, b) are kept."""
    spans = []
    for a in range(0, frames, ENCODE_WINDOW_FRAMES):
        b = min(frames, a + ENCODE_WINDOW_FRAMES)
        spans.append((max(0, a - ENCODE_CONTEXT_FRAMES), a, b, min(frames, b + ENCODE_CONTEXT_FRAMES)))
    return spans


@torch.no_grad()
def speaking_scores(model: LightASD, crops: np.ndarray, audio_16k: np.ndarray) -> np.ndarray:
    """Per-frame speaking logits (> 0: speaking) for a track's crops and its audio span."""
    return streamed_speaking_scores(
        model, len(crops), lambda lo, hi: crops[lo:hi], len(audio_16k), lambda a, b: audio_16k[a:b]
    )


@torch.no_grad()
def streamed_speaking_scores(
    model: LightASD,
    n_frames: int,
    read_crops: Callable[[int, int], np.ndarray],
    n_samples: int,
    read_audio: Callable[[int, int], np.ndarray],
) -> np.ndarray:
    """`speaking_scores` of a track read piece by piece, front to back: memory does not grow with
    the track (the encoders need about 1.7 MB per frame of a run on CPU; a whole 4-minute track
    at once took 10 GB).

    `read_crops(lo, hi)` gives the (hi - lo, 112, 112) crops of frames [lo, hi) and `read_audio(a, b)`
    samples [a, b) of the track's 16 kHz audio (`n_samples` long); both are asked for spans that
    never move back past the previous span's start.
    """
    frames = min(n_frames, mfcc_count(n_samples) // MFCC_PER_FRAME)
    if frames == 0:
        return np.zeros(n_frames, np.float32)
    device = next(model.parameters()).device
    fused = torch.empty((frames, 128), dtype=torch.float32, device=device)
    # The encoders are convolutional with a temporal reach of a few frames, so windows with
    # context on both sides give the whole track's features; only the recurrent backend, whose
    # state depends on where a window starts, runs per scoring window below.
    for lo, a, b, hi in encode_windows(frames):
        audio = mfcc_rows(read_audio, n_samples, lo * MFCC_PER_FRAME, hi * MFCC_PER_FRAME)
        audio_t = torch.from_numpy(np.ascontiguousarray(audio)).float().to(device)
        video_t = torch.from_numpy(np.ascontiguousarray(read_crops(lo, hi))).to(device)
        fused[a:b] = model.encode(audio_t[None], video_t[None])[0][a - lo : b - lo]
    logits = torch.stack([windowed_logits(model, fused, seconds * FPS) for seconds in WINDOW_SECONDS]).mean(0)
    scores = logits.cpu().numpy()
    # Frames past the end of the audio (a track can outlast it by a frame) repeat the last score.
    if frames < n_frames:
        scores = np.concatenate([scores, np.full(n_frames - frames, scores[-1], np.float32)])
    return scores.astype(np.float32)


def windowed_logits(model: LightASD, fused: torch.Tensor, step: int) -> torch.Tensor:
    """Logits of the (T, 128) features with the recurrent backend restarted every `step` frames.

    The windows of one length go through the backend as one batch (the last, shorter one on its
    own): the same logits as one call per window, to float rounding (4e-6 measured), in one call
    instead of T / step (a 60 s track took 347 calls over the window lengths, 0.68 CPU s; batched
    0.14 s), and one kernel launch per length on a GPU."""
    frames = len(fused)
    whole = frames // step
    parts = []
    if whole:
        parts.append(model.classify(fused[: whole * step].reshape(whole, step, fused.shape[1])).reshape(-1))
    if whole * step < frames:
        parts.append(model.classify(fused[whole * step :][None])[0])
    return torch.cat(parts)


class CropStream:
    """Model-input crops of a track's consecutive frames, cut as `read_crops` of
    `streamed_speaking_scores` asks for them: each frame is decoded once, front to back, and only
    the frames of the current span are held.

    `frames` yields the track's BGR frames from its first; frames past its end repeat the last crop
    (grey before any).
    """

    def __init__(self, frames: Iterator[np.ndarray], geometry: np.ndarray) -> None:
        self._frames: Iterator[np.ndarray] | None = frames
        self._geometry = geometry
        self._start = 0  # track frame of _crops[0]
        self._crops = np.empty((0, 112, 112), np.uint8)
        self._last: np.ndarray | None = None

    def __call__(self, lo: int, hi: int) -> np.ndarray:
        if lo < self._start:
            raise ValueError(f"crops are read front to back: frame {lo} is before {self._start}")
        done = self._start + len(self._crops)
        kept = self._crops[max(0, lo - self._start) :]
        new = np.empty((max(0, hi - max(done, lo)), 112, 112), np.uint8)
        for j in range(done, max(done, lo)):  # frames skipped over (never with overlapping spans)
            self._cut(j)
        for j in range(len(new)):
            new[j] = self._cut(max(done, lo) + j)
        self._crops = np.concatenate([kept, new]) if len(kept) else new
        self._start = lo
        return self._crops[: hi - lo]

    def _cut(self, index: int) -> np.ndarray:
        frame = next(self._frames, None) if self._frames is not None else None
        if frame is None:
            self._frames = None
            return self._last if self._last is not None else np.full((112, 112), 110, np.uint8)
        self._last = face_crop(frame, self._geometry[index])
        return self._last


def smooth(scores: np.ndarray, radius: int = 2) -> np.ndarray:
    """Moving average over ±radius frames, as the model's authors smooth their scores."""
    if len(scores) == 0:
        return scores
    kernel = np.ones(2 * radius + 1) / (2 * radius + 1)
    padded = np.pad(scores, radius, mode="edge")
    return np.convolve(padded, kernel, mode="valid").astype(np.float32)


def window_count(frames: int) -> int:
    return sum(math.ceil(frames / (s * FPS)) for s in WINDOW_SECONDS)
