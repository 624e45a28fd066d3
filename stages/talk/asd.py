"""Active-speaker scores for one face track with Light-ASD.

Inputs are prepared the way the released model was trained: a square crop around the face
box with extra room below the face (the mouth and chin matter), resized to 224, converted to
grayscale and cut to the central 112x112; 13 MFCCs at 100 Hz from 16 kHz audio (25 ms windows,
10 ms hop). Scores are averaged over several window lengths so that no frame depends on where
one window happens to start.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch
from python_speech_features import mfcc as compute_mfcc
from scipy.signal import medfilt

from voxhear.stages.talk.light_asd import LightASD

FPS = 25
MFCC_PER_FRAME = 4
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


@torch.no_grad()
def speaking_scores(model: LightASD, crops: np.ndarray, audio_16k: np.ndarray) -> np.ndarray:
    """Per-frame speaking logits (> 0: speaking) for a track's crops and its audio span."""
    features = mfcc_features(audio_16k)
    frames = min(len(crops), len(features) // MFCC_PER_FRAME)
    if frames == 0:
        return np.zeros(len(crops), np.float32)
    audio = torch.from_numpy(features[: frames * MFCC_PER_FRAME]).float()
    video = torch.from_numpy(crops[:frames])
    # The encoders are convolutional, so they run once over the whole track; only the recurrent
    # backend, whose state depends on where a window starts, runs per window.
    fused = model.encode(audio[None], video[None])[0]
    runs = []
    for seconds in WINDOW_SECONDS:
        step = seconds * FPS
        pieces = [model.classify(fused[start : start + step][None])[0] for start in range(0, frames, step)]
        runs.append(torch.cat(pieces))
    scores = torch.stack(runs).mean(0).numpy()
    # Frames past the end of the audio (a track can outlast it by a frame) repeat the last score.
    if frames < len(crops):
        scores = np.concatenate([scores, np.full(len(crops) - frames, scores[-1], np.float32)])
    return scores.astype(np.float32)


def smooth(scores: np.ndarray, radius: int = 2) -> np.ndarray:
    """Moving average over ±radius frames, as the model's authors smooth their scores."""
    if len(scores) == 0:
        return scores
    kernel = np.ones(2 * radius + 1) / (2 * radius + 1)
    padded = np.pad(scores, radius, mode="edge")
    return np.convolve(padded, kernel, mode="valid").astype(np.float32)


def window_count(frames: int) -> int:
    return sum(math.ceil(frames / (s * FPS)) for s in WINDOW_SECONDS)
