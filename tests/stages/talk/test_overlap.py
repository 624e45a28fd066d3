"""Overlap that diarization gave to the other party alone, found from the face's lips (overlap.py)."""

from __future__ import annotations

import dataclasses

import numpy as np

from voxhear.stages.audio.diarization import Turn, rttm_text
from voxhear.stages.talk.overlap import OVERLAP_SELF, overlap_turns

FPS = 25.0


def spans(turns):
    return [(round(t.start, 2), round(t.end, 2), t.speaker) for t in turns]


def test_lips_that_move_during_another_speakers_turn_make_this_face_speak_too():
    scores = np.full(150, -1.0)
    scores[50:75] = 4.0  # 2-3 s: this face talks while B's turn goes on
    scores[100:103] = 4.0  # 4-4.12 s: too short to count (a smile, a nod)
    turns = [Turn(0.0, 6.0, "B")]
    assert spans(overlap_turns(turns, scores, 0, FPS, frozenset({"A"}), 3.0, 5)) == [(2.0, 3.0, OVERLAP_SELF)]
    # Below the logit asked for: nothing.
    assert overlap_turns(turns, scores, 0, FPS, frozenset({"A"}), 4.5, 5) == []
    # The track's frames are on the source's timeline: a track from frame 25 sees B's turn 1 s earlier.
    assert spans(overlap_turns([Turn(1.0, 7.0, "B")], scores, 25, FPS, frozenset(), 3.0, 5)) == [
        (3.0, 4.0, OVERLAP_SELF)
    ]


def test_its_own_turns_and_pauses_are_not_overlap():
    scores = np.full(150, 4.0)
    assert overlap_turns([Turn(0.0, 6.0, "A")], scores, 0, FPS, frozenset({"A"}), 3.0, 5) == []
    assert overlap_turns([], scores, 0, FPS, frozenset({"A"}), 3.0, 5) == []
    # Where its own turn and B's overlap already, diarization found the overlap: nothing added there.
    turns = [Turn(0.0, 2.0, "A"), Turn(1.0, 4.0, "B")]
    assert spans(overlap_turns(turns, scores, 0, FPS, frozenset({"A"}), 3.0, 5)) == [(2.0, 4.0, OVERLAP_SELF)]


def test_the_other_face_talking_during_this_faces_turn_is_the_other_party_talking_too():
    from voxhear.stages.talk.overlap import OVERLAP_OTHER, rival_overlap_turns

    # This track: source frames 25-174 (1-7 s), its own speaker A talks 1-7 s. The other face is on
    # screen from source frame 50 (2 s); its frames 50-74 are source frames 100-124: it talks at 4-5 s.
    rival = np.full(150, -1.0)
    rival[50:75] = 4.0
    turns = [Turn(1.0, 7.0, "A")]
    found = rival_overlap_turns(turns, 25, 150, FPS, frozenset({"A"}), 50, rival, 3.0, 5)
    assert spans(found) == [(4.0, 5.0, OVERLAP_OTHER)]
    # During another speaker's turn (already listening), or with the other face quiet: nothing.
    assert rival_overlap_turns([Turn(1.0, 7.0, "B")], 25, 150, FPS, frozenset({"A"}), 50, rival, 3.0, 5) == []
    assert rival_overlap_turns(turns, 25, 150, FPS, frozenset({"A"}), 50, rival - 5, 3.0, 5) == []
    # The other face's track may start before and end after this one: only the shared frames count.
    assert spans(rival_overlap_turns(turns, 25, 150, FPS, frozenset({"A"}), 0, np.full(400, 4.0), 3.0, 5)) == [
        (1.0, 7.0, OVERLAP_OTHER)
    ]


def test_the_stage_adds_both_rules_turns_as_configured(tmp_path):
    """TalkStage._overlap_turns: each rule on only when its setting is, both from the same turns."""
    from voxhear.pipeline.models import ModelStore
    from voxhear.pipeline.records import FaceTrackRecord
    from voxhear.pipeline.stage import RunContext
    from voxhear.stages.talk.config import TalkConfig
    from voxhear.stages.talk.overlap import OVERLAP_OTHER
    from voxhear.stages.talk.stage import TalkStage

    row = FaceTrackRecord(source_uri="v.mp4", source_id="v", track_start_frame=0, track_end_frame=150)
    turns = [Turn(0.0, 3.0, "A"), Turn(3.0, 6.0, "B")]
    scores = np.full(150, -1.0)
    scores[100:125] = 4.0  # this face talks at 4-5 s, during B's turn
    rival = np.full(150, -1.0)
    rival[25:50] = 4.0  # the other face talks at 1-2 s, during this face's turn
    rivals = [("v-face1-00000000", 0, rival)]

    # The mix hears two voices at 1-2 s (the lips' rival rule finds it too) and at 2.2-2.6 s.
    heard = tmp_path / "overlap.rttm"
    heard.write_text(rttm_text("v", [Turn(1.0, 2.0, "overlap"), Turn(2.2, 2.6, "overlap")]))

    def added(overlap_uri="", **settings):
        stage = TalkStage(TalkConfig(**settings), RunContext(run_dir=tmp_path, model_store=ModelStore()))
        track = dataclasses.replace(row, overlap_uri=overlap_uri)
        return spans(stage._overlap_turns(track, turns, {"A"}, scores, 150, FPS, rivals))

    lips_off = {"overlap_talk_logit": None, "rival_overlap_logit": None}
    assert added(**lips_off) == []
    assert added(overlap_talk_logit=2.5, rival_overlap_logit=None) == [(4.0, 5.0, OVERLAP_SELF)]
    assert added(overlap_talk_logit=None, rival_overlap_logit=2.5) == [(1.0, 2.0, OVERLAP_OTHER)]
    assert added() == [(4.0, 5.0, OVERLAP_SELF), (1.0, 2.0, OVERLAP_OTHER)]  # no overlap file: the lips only
    # The heard regions add what the lips did not find, and nothing when the setting is off.
    assert added(str(heard), **lips_off) == [(1.0, 2.0, OVERLAP_OTHER), (2.2, 2.6, OVERLAP_OTHER)]
    assert added(str(heard)) == [(4.0, 5.0, OVERLAP_SELF), (1.0, 2.0, OVERLAP_OTHER), (2.2, 2.6, OVERLAP_OTHER)]
    assert added(str(heard), heard_overlap_logit=None) == added()


def test_overlap_heard_in_the_mix_goes_to_the_party_the_turns_lack():
    from voxhear.stages.talk.overlap import OVERLAP_OTHER, heard_overlap_turns

    # A (this face) talks 0-3 s, B 3-6 s; the mix hears two voices at 1-2 s, 4-5 s and 5.5-5.6 s.
    turns = [Turn(0.0, 3.0, "A"), Turn(3.0, 6.0, "B")]
    regions = [(1.0, 2.0), (4.0, 5.0), (5.5, 5.6)]
    scores = np.full(150, -1.0)
    scores[100:125] = 1.0  # the lips move at 4-5 s, under the lip rule's 2.5 but over 0.5

    def heard(logit, lips=scores, min_frames=5):
        return spans(heard_overlap_turns(turns, regions, lips, 0, FPS, frozenset({"A"}), logit, min_frames))

    # During A's turn the second voice is the other party's; during B's, this face's lips decide.
    assert heard(0.5) == [(1.0, 2.0, OVERLAP_OTHER), (4.0, 5.0, OVERLAP_SELF)]
    assert heard(1.5) == [(1.0, 2.0, OVERLAP_OTHER)]  # lips below the setting: a third voice perhaps
    assert heard(0.5, min_frames=2) == [(1.0, 2.0, OVERLAP_OTHER), (4.0, 5.0, OVERLAP_SELF)]  # 5.5-5.6: lips still
    # Where both parties already have turns, or nobody has, nothing is added.
    both = [Turn(0.0, 3.0, "A"), Turn(0.5, 2.5, "B")]
    assert spans(heard_overlap_turns(both, [(1.0, 2.0)], scores, 0, FPS, frozenset({"A"}), 0.5, 5)) == []
    assert spans(heard_overlap_turns([], regions, scores, 0, FPS, frozenset({"A"}), 0.5, 5)) == []
