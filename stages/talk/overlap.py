"""Overlapped speech that diarization gives to the other party alone: this face talks too.

On real conversations diarization finds little of the overlapped speech (84% of the overlapped
time of the realistic tuning set is missed: pyannote labels it with one speaker, the louder or
the one already talking). The face's Light-ASD tells when the person on screen speaks during
another speaker's turn: a talking face scores 2 to 5, a listening one -2 to 0.3. Runs where only
other speakers have turns but the face's smoothed logit stays at or above `talk_logit` get a turn
of this face as well, so that the frames become `both` and their speech goes to the self track
too, as for diarized overlap.

Measured before choosing this (tuning set, docs/design/real-people-labels.md): the speech that
diarization misses outright is near-silent in the separated speech (median -47 dB under the
speaking level, like pauses at -53 dB) and sits at turn edges, so the level of the separated
speech cannot recover it; the overlap is audible, only mislabelled.
"""

from __future__ import annotations

import numpy as np

from voxhear.stages.audio.diarization import Turn

# The label of the added turns (the stage counts it among the face's own speakers).
OVERLAP_SELF = "~overlap-self"


def overlap_turns(
    turns: list[Turn],
    scores: np.ndarray,
    start_frame: int,
    fps: float,
    self_speakers: frozenset[str],
    talk_logit: float,
    min_frames: int,
) -> list[Turn]:
    """Turns of this face (OVERLAP_SELF) for every run of at least `min_frames` frames of the track
    (`scores`: its smoothed Light-ASD logits; frame 0 is `start_frame` of the source) during which
    only speakers outside `self_speakers` have turns and the logit stays at or above `talk_logit`."""
    n = len(scores)
    centers = (start_frame + np.arange(n) + 0.5) / fps
    by_other = np.zeros(n, bool)
    by_self = np.zeros(n, bool)
    for t in turns:
        first, last = int(np.searchsorted(centers, t.start, "left")), int(np.searchsorted(centers, t.end, "left"))
        (by_self if t.speaker in self_speakers else by_other)[first:last] = True
    return [
        Turn(float(start_frame + a) / fps, float(start_frame + b) / fps, OVERLAP_SELF)
        for a, b in _runs(by_other & ~by_self & (scores >= talk_logit), min_frames)
    ]


def _runs(mask: np.ndarray, min_frames: int) -> list[tuple[int, int]]:
    """[a, b) of every run of True in `mask` at least `min_frames` long."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True) if b - a >= min_frames]
