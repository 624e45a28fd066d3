"""The voice-activity rule behind every talking label of the ground truth.

One rule, applied to each source recording once, decides which of its samples are speech;
placing a recording into a video carries that mask along, so the RTTM turns, the per-frame
speaking labels and the silent (listening) frames of a GRID clip all agree. The rule:

1. RMS energy in 25 ms windows every 10 ms, in dB.
2. A window is speech when it is above `max(floor + 12 dB, peak - 25 dB)`, where `floor` is
   the 20th percentile and `peak` the 99th percentile of the recording's window energies.
   (GRID's room noise sits 25 to 40 dB under the speech peak; a fixed absolute level would not
   fit both the quiet and the noisy clips.)
3. On the video timeline: stretches closer than `JOIN_GAP_S` (one analysis window) are joined (a plosive's burst and
   its vowel are one sound); then stretches shorter than `MIN_SPEECH_S` are dropped (clicks,
   breaths, lip noise); then gaps shorter than `MERGE_GAP_S` between the remaining stretches of
   the same person are filled (pauses between words are part of the turn).

   Dropping clicks *before* filling pauses matters: in the other order, a 10-60 ms lip click
   0.2-0.3 s after the last word was bridged into the turn, and the turn's end moved 0.3-0.4 s
   past the speech (GRID bbaf2n, lrwp9a, lwbsza; silero-vad and pyannote both end those turns
   where the words end; see tests/synth/test_synth_units.py).
"""

from __future__ import annotations

import numpy as np

from voxhear.benchmarks.synth.options import SAMPLE_RATE

HOP = SAMPLE_RATE // 100  # 10 ms
WINDOW = SAMPLE_RATE * 25 // 1000  # 25 ms
FLOOR_PERCENTILE = 20.0
PEAK_PERCENTILE = 99.0
ABOVE_FLOOR_DB = 12.0
BELOW_PEAK_DB = 25.0
MERGE_GAP_S = 0.3
JOIN_GAP_S = 0.025  # one analysis window: shorter dips are not silences
MIN_SPEECH_S = 0.1


def window_db(audio: np.ndarray) -> np.ndarray:
    """RMS level in dB of 25 ms windows centred every 10 ms (one value per 10 ms hop)."""
    n_hops = int(np.ceil(len(audio) / HOP))
    pad = WINDOW // 2
    padded = np.pad(audio.astype(np.float64), (pad, pad + WINDOW))
    power = np.convolve(padded ** 2, np.ones(WINDOW) / WINDOW, mode="valid")
    return 10.0 * np.log10(power[: n_hops * HOP : HOP][:n_hops] + 1e-12)


def speech_mask(audio: np.ndarray) -> np.ndarray:
    """Per-sample boolean speech mask of one source recording (steps 1 and 2 of the rule)."""
    levels = window_db(audio)
    floor = np.percentile(levels, FLOOR_PERCENTILE)
    peak = np.percentile(levels, PEAK_PERCENTILE)
    hops = levels > max(floor + ABOVE_FLOOR_DB, peak - BELOW_PEAK_DB)
    return np.repeat(hops, HOP)[: len(audio)]


def mask_to_segments(mask: np.ndarray) -> list[tuple[int, int]]:
    """[(start, end_exclusive)] of the True runs of a boolean array."""
    padded = np.concatenate(([False], mask.astype(bool), [False]))
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2])]


def segments_to_mask(segments: list[tuple[int, int]], length: int) -> np.ndarray:
    mask = np.zeros(length, dtype=bool)
    for start, end in segments:
        mask[max(0, start):min(length, end)] = True
    return mask


def _merge_gaps(segments: list[tuple[int, int]], gap: int) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in segments:
        if merged and start - merged[-1][1] < gap:
            merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged


def clean_segments(mask: np.ndarray, merge_gap: int = round(MERGE_GAP_S * SAMPLE_RATE),
                   min_length: int = round(MIN_SPEECH_S * SAMPLE_RATE),
                   join_gap: int = round(JOIN_GAP_S * SAMPLE_RATE)) -> list[tuple[int, int]]:
    """Step 3 of the rule: join fragments, drop clicks, fill pauses (sample units)."""
    sounds = [(s, e) for s, e in _merge_gaps(mask_to_segments(mask), join_gap) if e - s >= min_length]
    return [(s, e) for s, e in _merge_gaps(sounds, merge_gap) if e - s >= min_length]
