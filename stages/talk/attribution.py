"""Which diarized speaker, if any, is the face on screen.

The evidence is the face's mean Light-ASD logit during each speaker's solo speech inside the
track. On the tuning sample a face scores 2 to 5 while its own voice is heard and -2 to 0.3
while another voice is (docs/benchmarks/talk.md), so the decision uses an absolute threshold
with a band of doubt around it, plus a margin over the runner-up: two speakers that both make
this face look like it talks are a diarization split or a dubbing problem, and ambiguous.
Pauses are reported but not used: the frames next to a turn's edges often still move.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

PAUSE = "<pause>"


@dataclass
class Attribution:
    # The diarized speaker who is the on-screen person; "" when they do not speak in the track.
    self_speaker: str
    # Mean smoothed ASD logit per speaker (solo frames) and during pauses, where measured.
    evidence: dict[str, float] = field(default_factory=dict)
    # How far the decision is from being the other way (in logits); below 0: ambiguous.
    margin: float = 0.0


def attribute(
    scores: np.ndarray,
    active: np.ndarray,
    speakers: list[str],
    min_frames: int,
    threshold: float,
    band: float,
    runner_up_margin: float,
    exclude: frozenset[str] = frozenset(),
) -> Attribution:
    """Decide the on-screen speaker from per-frame ASD `scores` (T,) and speaker `active` (S, T).

    Speakers in `exclude` (taken by another face on screen at the same time) keep their evidence
    but cannot be chosen, nor count as the runner-up.
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
        return Attribution("", evidence, margin=float("inf"))
    best_value, best = heard[0]
    to_threshold = abs(best_value - threshold) - band
    if best_value < threshold:
        return Attribution("", evidence, margin=to_threshold)
    margin = to_threshold
    if len(heard) > 1:
        margin = min(margin, best_value - heard[1][0] - runner_up_margin)
    return Attribution(best, evidence, margin=margin)


def loses_to(own: Attribution, own_key: str, rival: Attribution, rival_key: str) -> bool:
    """Whether a face on screen at the same time claims `own`'s speaker with stronger evidence.

    Two faces visible together are two people, and one voice belongs to one of them: the face
    whose ASD rises more for that voice keeps it (ties go to the smaller key, so both sides of
    a pair decide the same way whichever is processed first).
    """
    speaker = own.self_speaker
    if not speaker or rival.self_speaker != speaker:
        return False
    mine, theirs = own.evidence[speaker], rival.evidence[speaker]
    return theirs > mine or (theirs == mine and rival_key < own_key)
