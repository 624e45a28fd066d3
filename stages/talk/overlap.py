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
from voxhear.stages.runs import runs_of
from voxhear.stages.talk.activity import frame_spans

# The labels of the added turns: this face's (the stage counts it among its own speakers), and a
# face on screen with it (the other party).
OVERLAP_SELF = "~overlap-self"
OVERLAP_OTHER = "~overlap-other"


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
    by_self, by_other = _covered(turns, start_frame, len(scores), fps, self_speakers)
    return [
        Turn(float(start_frame + a) / fps, float(start_frame + b) / fps, OVERLAP_SELF)
        for a, b in runs_of(by_other & ~by_self & (scores >= talk_logit), min_frames)
    ]


def _covered(
    turns: list[Turn], start_frame: int, n_frames: int, fps: float, self_speakers: frozenset[str]
) -> tuple[np.ndarray, np.ndarray]:
    """(frames with a turn of `self_speakers`, frames with a turn of anyone else) of a track of
    `n_frames` frames from source frame `start_frame` (a frame counts when a turn covers its centre)."""
    by_self = np.zeros(n_frames, bool)
    by_other = np.zeros(n_frames, bool)
    for t, (first, last) in zip(
        turns, frame_spans(((t.start, t.end) for t in turns), start_frame, n_frames, fps), strict=True
    ):
        (by_self if t.speaker in self_speakers else by_other)[first:last] = True
    return by_self, by_other


def rival_overlap_turns(
    turns: list[Turn],
    start_frame: int,
    n_frames: int,
    fps: float,
    self_speakers: frozenset[str],
    rival_start: int,
    rival_scores: np.ndarray,
    talk_logit: float,
    min_frames: int,
) -> list[Turn]:
    """Turns of the other party (OVERLAP_OTHER) for every run of at least `min_frames` frames of
    this track where only this face's speakers have turns but a face on screen with it (its
    smoothed logits `rival_scores` from source frame `rival_start`) talks too: the converse of
    `overlap_turns`, seen from the listener's lips."""
    by_self, by_other = _covered(turns, start_frame, n_frames, fps, self_speakers)
    rival = np.full(n_frames, -np.inf)
    a, b = max(rival_start, start_frame), min(rival_start + len(rival_scores), start_frame + n_frames)
    if b > a:
        rival[a - start_frame : b - start_frame] = rival_scores[a - rival_start : b - rival_start]
    return [
        Turn(float(start_frame + a) / fps, float(start_frame + b) / fps, OVERLAP_OTHER)
        for a, b in runs_of(by_self & ~by_other & (rival >= talk_logit), min_frames)
    ]


def heard_overlap_turns(
    turns: list[Turn],
    regions: list[tuple[float, float]],
    scores: np.ndarray,
    start_frame: int,
    fps: float,
    self_speakers: frozenset[str],
    self_logit: float,
    min_frames: int,
) -> list[Turn]:
    """Overlap that the mix's segmentation hears (`regions`: seconds with two or more voices,
    `Diarizer.overlap_file`) where the diarized turns have one party only: during this face's
    turns the other party talks too (OVERLAP_OTHER); during only other speakers' turns this face
    is the second voice when its smoothed logit is at least `self_logit` (OVERLAP_SELF), since the
    second voice may also be a third person. Runs shorter than `min_frames` are left alone."""
    n = len(scores)
    by_self, by_other = _covered(turns, start_frame, n, fps, self_speakers)
    heard = np.zeros(n, bool)
    for a, b in frame_spans(regions, start_frame, n, fps):
        heard[a:b] = True

    def spans(mask: np.ndarray, label: str) -> list[Turn]:
        return [
            Turn(float(start_frame + a) / fps, float(start_frame + b) / fps, label)
            for a, b in runs_of(mask, min_frames)
        ]

    return spans(heard & by_self & ~by_other, OVERLAP_OTHER) + spans(
        heard & by_other & ~by_self & (scores >= self_logit), OVERLAP_SELF
    )
