"""Diarized turns as per-frame speaker activity and per-sample audio masks.

Everything here is on the source's normalized timeline: frame f covers [f/fps, (f+1)/fps).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from voxhear.pipeline.records import STATE_BOTH, STATE_LISTEN, STATE_SILENCE, STATE_TALK
from voxhear.stages.audio.diarization import Turn


def speakers_of(turns: list[Turn]) -> list[str]:
    return sorted({t.speaker for t in turns})


def frame_activity(
    turns: list[Turn], speakers: list[str], start_frame: int, n_frames: int, fps: float, pad_s: float = 0.0
) -> np.ndarray:
    """(n_speakers, n_frames) bool: the speaker talks over at least half of the frame."""
    active = np.zeros((len(speakers), n_frames), bool)
    index = {s: i for i, s in enumerate(speakers)}
    mine = [t for t in turns if t.speaker in index]
    # By index ranges, not a comparison of every frame with every turn: a long source has
    # thousands of turns, and this runs per track.
    for t, (a, b) in zip(
        mine, frame_spans(((t.start - pad_s, t.end + pad_s) for t in mine), start_frame, n_frames, fps), strict=True
    ):
        active[index[t.speaker], a:b] = True
    return active


def frame_spans(
    spans: Iterable[tuple[float, float]], start_frame: int, n_frames: int, fps: float
) -> list[tuple[int, int]]:
    """Each (start, end) span in seconds as the frames [a, b) of a track of `n_frames` frames from
    source frame `start_frame` whose centre it covers (a frame centre in [start, end)), as index
    ranges: a long source has thousands of turns, most of them outside any one track."""
    centers = (start_frame + np.arange(n_frames) + 0.5) / fps
    return [(int(np.searchsorted(centers, a, "left")), int(np.searchsorted(centers, b, "left"))) for a, b in spans]


def frame_states(self_active: np.ndarray, other_active: np.ndarray) -> np.ndarray:
    """Per-frame state codes of the on-screen person from who is talking."""
    state = np.full(self_active.shape, STATE_SILENCE, np.uint8)
    state[self_active & ~other_active] = STATE_TALK
    state[~self_active & other_active] = STATE_LISTEN
    state[self_active & other_active] = STATE_BOTH
    return state


def padded_states(
    self_active: np.ndarray, other_active: np.ndarray, self_padded: np.ndarray, other_padded: np.ndarray
) -> np.ndarray:
    """`frame_states`, with the silent frames that a party's padded turns reach given to that party.

    Diarization ends turns early and starts them late (it clips word onsets and soft endings), so
    the turns are widened by the talk stage's pad, as the audio masks are. Padding widens speech
    into silence only: a silent frame both parties' pads reach goes to the party whose speech is
    nearer, so padding never makes `both` (two turns meeting would otherwise overlap by twice the pad).
    """
    states = frame_states(self_active, other_active)
    silent = states == STATE_SILENCE
    to_self = silent & self_padded & ~other_padded
    to_other = silent & other_padded & ~self_padded
    contested = silent & self_padded & other_padded
    if contested.any():
        nearer_self = _frames_to_nearest(self_active) <= _frames_to_nearest(other_active)
        to_self |= contested & nearer_self
        to_other |= contested & ~nearer_self
    states[to_self] = STATE_TALK
    states[to_other] = STATE_LISTEN
    return states


def _frames_to_nearest(active: np.ndarray) -> np.ndarray:
    """Per frame, how many frames away the nearest active frame is (a large number if none is)."""
    n = len(active)
    index = np.arange(n)
    far = 2 * n + 1
    before = np.maximum.accumulate(np.where(active, index, -far))
    after = np.minimum.accumulate(np.where(active, index, n + far)[::-1])[::-1]
    return np.minimum(index - before, after - index)


def sample_mask(
    turns: list[Turn], start_sample: int, n_samples: int, rate: int, pad_s: float, ramp_s: float
) -> np.ndarray:
    """Float mask in [0, 1] over [start_sample, start_sample + n_samples): 1 inside the (padded)
    turns, with raised-cosine edges of ramp_s so that cutting speech never clicks."""
    mask = np.zeros(n_samples, np.float64)
    ramp = max(int(round(ramp_s * rate)), 0)
    edge = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, ramp + 2)[1:-1]) if ramp else np.zeros(0)
    for t in turns:
        a = int(round((t.start - pad_s) * rate)) - start_sample
        b = int(round((t.end + pad_s) * rate)) - start_sample
        if b <= 0 or a >= n_samples:
            continue
        piece = np.ones(b - a)
        if ramp and b - a > 2 * ramp:
            piece[:ramp], piece[-ramp:] = edge, edge[::-1]
        lo, hi = max(a, 0), min(b, n_samples)
        np.maximum(mask[lo:hi], piece[lo - a : hi - a], out=mask[lo:hi])
    return mask
