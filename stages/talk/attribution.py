"""Which diarized speaker, if any, is the face on screen.

The evidence is the face's mean Light-ASD logit during each speaker's solo speech inside the
track. On the tuning sample a face scores 2 to 5 while its own voice is heard and -2 to 0.3
while another voice is (docs/benchmarks/talk.md), so the decision uses an absolute threshold
with a band of doubt around it, plus a margin over the runner-up: two speakers that both make
this face look like it talks are a diarization split or a dubbing problem, and ambiguous.
Pauses are reported but not used: the frames next to a turn's edges often still move.

With `merge_voices`, a runner-up that is too close to the best to call but makes the face talk
confidently too (at least threshold + band) is this person as well: on real recordings
diarization splits one voice into two or three speakers, and lips that move with all of them
say they are one person. A clear winner keeps the track alone, as without merging (on the
composed GRID sets a face can move with a second voice, 1-2 logits below its own). A face on screen at the
same time that claims one of them with stronger evidence still takes it (`lost_voices`).
With a face on screen beside it, a voice with which this face talks confidently while the other
face stays silent is merged even below the margin (`silent_for_rivals`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from voxhear.stages.audio.diarization import Turn
from voxhear.stages.runs import runs_of
from voxhear.stages.talk.activity import frame_spans

PAUSE = "<pause>"


@dataclass
class Attribution:
    # The diarized speakers who are the on-screen person, strongest evidence first; empty when
    # they do not speak in the track.
    self_speakers: tuple[str, ...]
    # Mean smoothed ASD logit per speaker (solo frames) and during pauses, where measured.
    evidence: dict[str, float] = field(default_factory=dict)
    # How far the decision is from being the other way (in logits); below 0: ambiguous.
    margin: float = 0.0

    @property
    def self_speaker(self) -> str:
        """The speaker with the strongest evidence, or ""."""
        return self.self_speakers[0] if self.self_speakers else ""


def attribute(
    scores: np.ndarray,
    active: np.ndarray,
    speakers: list[str],
    min_frames: int,
    threshold: float,
    band: float,
    runner_up_margin: float,
    exclude: frozenset[str] = frozenset(),
    merge_voices: bool = False,
    rival_silent: frozenset[str] = frozenset(),
) -> Attribution:
    """Decide the on-screen speaker(s) from per-frame ASD `scores` (T,) and speaker `active` (S, T).

    Speakers in `exclude` (taken by another face on screen at the same time) keep their evidence
    but cannot be chosen, nor count as the runner-up. Speakers in `rival_silent` are voices with
    which every other face on screen stays silent (`silent_for_rivals`): with `merge_voices`, one
    that makes this face talk confidently is this face's voice too, however far below the best,
    if this face's own lips rest in the pauses (mean logit there below `threshold`, or too few
    pause frames to say).
    """
    solo = active & (active.sum(axis=0) == 1)
    evidence: dict[str, float] = {}
    for i, speaker in enumerate(speakers):
        if solo[i].sum() >= min_frames:
            evidence[speaker] = float(scores[solo[i]].mean())
    pauses = ~active.any(axis=0)
    if pauses.sum() >= min_frames:
        evidence[PAUSE] = float(scores[pauses].mean())
    heard = sorted(((v, s) for s, v in evidence.items() if s != PAUSE and s not in exclude), reverse=True)
    if not heard:
        # Nobody speaks long enough inside the track: nothing to attribute.
        return Attribution((), evidence, margin=float("inf"))
    best_value, best = heard[0]
    if best_value < threshold:
        return Attribution((), evidence, margin=abs(best_value - threshold) - band)
    # A runner-up too close to the best to call is, when the face also talks confidently with it,
    # the same person's voice split in two rather than a reason to give up on the track. A clear
    # winner keeps the track to itself, as without merging.
    # Beyond the margin only with the other face's silence for it, and only from a face whose lips
    # rest when nobody speaks: lips that move all the time say nothing about whose voice it is.
    lips_rest = evidence.get(PAUSE, float("-inf")) < threshold
    split = [
        s
        for v, s in heard[1:]
        if merge_voices
        and v >= threshold + band
        and (best_value - v < runner_up_margin or (s in rival_silent and lips_rest))
    ]
    selves = [best, *split]
    margin = min(abs(evidence[s] - threshold) - band for s in selves)
    rest = [v for v, s in heard if s not in selves]
    if rest:
        margin = min(margin, best_value - rest[0] - runner_up_margin)
    return Attribution(tuple(selves), evidence, margin=margin)


def silent_for_rivals(rivals: list[Attribution], threshold: float) -> frozenset[str]:
    """The speakers during whose solo speech every face on screen with this one was measured and
    stays below `threshold` (none without such faces).

    In a two-shot this is what tells a split of this face's own voice from the other person's
    voice when the face's lips also move with the second one, 1-2 logits below its best (as on
    GRID, where a clear winner otherwise keeps the track alone): the other person's lips move with
    their own voice, and lips still on the other face leave this one as the speaker.
    """
    if not rivals:
        return frozenset()
    heard = [{s for s, v in r.evidence.items() if s != PAUSE and v < threshold} for r in rivals]
    return frozenset(set.intersection(*heard))


def lost_voices(own: Attribution, own_key: str, rival: Attribution, rival_key: str) -> set[str]:
    """The speakers of `own` that a face on screen at the same time claims with stronger evidence.

    Two faces visible together are two people, and one voice belongs to one of them: the face
    whose ASD rises more for that voice keeps it (ties go to the smaller key, so both sides of
    a pair decide the same way whichever is processed first).
    """
    lost = set()
    for speaker in set(own.self_speakers) & set(rival.self_speakers):
        mine, theirs = own.evidence[speaker], rival.evidence[speaker]
        if theirs > mine or (theirs == mine and rival_key < own_key):
            lost.add(speaker)
    return lost


# Appended to a self speaker's label for its turns that this face does not say.
NOT_THIS_FACE = "~not-this-face"


def unsaid_turns(
    turns: list[Turn],
    self_speakers: set[str],
    scores: np.ndarray,
    start_frame: int,
    fps: float,
    min_frames: int,
    below: float,
) -> list[Turn]:
    """`turns` with each self speaker's turn during which this face's lips stay still relabelled
    as someone else's (label + NOT_THIS_FACE).

    Attribution links a whole voice cluster to the face, but on real recordings a cluster often
    holds a second voice too (an off-screen party, or the other person in a close pair of
    voices). The face's Light-ASD over the turn's solo frames tells: a mean logit below `below`
    (a listening face scores -2 to 0.3, a talking one 2 to 5) means the person on screen is not
    the one speaking. Turns with fewer than `min_frames` solo frames inside the track keep their
    label: too little to judge.
    """
    n = len(scores)
    spans = frame_spans(((t.start, t.end) for t in turns), start_frame, n, fps)
    covered = _turns_per_frame(spans, n)
    out = []
    for t, (a, b) in zip(turns, spans, strict=True):
        if t.speaker in self_speakers and b > a:
            solo = covered[a:b] == 1
            if solo.sum() >= min_frames and float(scores[a:b][solo].mean()) < below:
                t = Turn(t.start, t.end, t.speaker + NOT_THIS_FACE)
        out.append(t)
    return out


def _turns_per_frame(spans: list[tuple[int, int]], n: int) -> np.ndarray:
    """How many of the frame `spans` ([a, b) of a track of `n` frames) cover each frame."""
    edges = np.zeros(n + 1, np.int32)
    for a, b in spans:
        edges[a] += 1
        edges[b] -= 1
    return np.cumsum(edges[:n])


def still_runs(
    turns: list[Turn],
    self_speakers: set[str],
    scores: np.ndarray,
    start_frame: int,
    fps: float,
    min_frames: int,
    below: float,
) -> list[Turn]:
    """`turns` with every run of at least `min_frames` frames inside a self speaker's turn during
    which this face's smoothed logit stays below `below` cut out of the turn and relabelled as
    someone else's (label + NOT_THIS_FACE): `unsaid_turns` for the part of a turn, where a voice
    cluster took the other party's reply into this person's turn."""
    out: list[Turn] = []
    spans = frame_spans(((t.start, t.end) for t in turns), start_frame, len(scores), fps)
    for t, (a, b) in zip(turns, spans, strict=True):
        if t.speaker not in self_speakers or b - a < min_frames:
            out.append(t)
            continue
        runs = runs_of(scores[a:b] < below, min_frames)
        if not runs:
            out.append(t)
            continue
        cursor = t.start
        for x, y in runs:
            lo = t.start if x == 0 else (start_frame + a + x) / fps
            hi = t.end if a + y >= b else (start_frame + a + y) / fps
            if lo > cursor:
                out.append(Turn(cursor, lo, t.speaker))
            out.append(Turn(lo, hi, t.speaker + NOT_THIS_FACE))
            cursor = hi
        if cursor < t.end:
            out.append(Turn(cursor, t.end, t.speaker))
    return out


# Joins a speaker's label and the key of the face that says its turns when one voice cluster is
# split between two faces on screen together (`split_between_faces`).
SAID_BY = "@"


def split_between_faces(
    turns: list[Turn],
    faces: list[tuple[str, int, np.ndarray]],
    fps: float,
    min_frames: int,
    talk_logit: float,
    margin: float,
) -> list[Turn]:
    """`turns` with each speaker whose turns two faces on screen together take apart split into one
    speaker per face (label + SAID_BY + the face's key, for the turns that face says).

    Diarization sometimes puts two people's voices in one cluster; in a two-shot their lips tell
    them apart turn by turn. A turn is said by a face when the face's mean logit over the turn's
    solo frames (at least `min_frames` of them on each face measured) reaches `talk_logit` and
    every other face's stays at least `margin` below it. Only a speaker with turns said by two or
    more faces is split; its turns that no face says keep its label. `faces`: (key, first source
    frame, smoothed Light-ASD scores) of every face track on screen, this one included; each face
    track decides the same split, whichever it is, from the same faces.
    """
    if len(faces) < 2:
        return turns
    spans = {key: frame_spans(((t.start, t.end) for t in turns), start, len(s), fps) for key, start, s in faces}
    solos = {key: _turns_per_frame(spans[key], len(face_scores)) == 1 for key, _, face_scores in faces}
    said: list[str | None] = []
    for i in range(len(turns)):
        means = {}
        for key, _, face_scores in faces:
            a, b = spans[key][i]
            solo = solos[key][a:b]
            if solo.sum() >= min_frames:
                means[key] = float(face_scores[a:b][solo].mean())
        best = max(means, key=lambda k: (means[k], k), default=None)
        clear = (
            best is not None
            and len(means) >= 2
            and means[best] >= talk_logit
            and all(v <= means[best] - margin for k, v in means.items() if k != best)
        )
        said.append(best if clear else None)
    sayers: dict[str, set[str]] = {}
    for t, sayer in zip(turns, said, strict=True):
        if sayer is not None:
            sayers.setdefault(t.speaker, set()).add(sayer)
    split = {s for s, keys in sayers.items() if len(keys) >= 2}
    if not split:
        return turns
    return [
        Turn(t.start, t.end, f"{t.speaker}{SAID_BY}{sayer}") if t.speaker in split and sayer is not None else t
        for t, sayer in zip(turns, said, strict=True)
    ]
