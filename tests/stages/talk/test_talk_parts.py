"""The talk stage's parts on hand-made inputs: activity, states, attribution, exact track split, windows."""

import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import SHARED_MODELS
from tests.stages.audio.conftest import MEDIA
from voxhear.pipeline.models import ModelStore
from voxhear.pipeline.records import STATE_BOTH, STATE_LISTEN, STATE_SILENCE, STATE_TALK
from voxhear.stages.audio.deepfilternet_onnx import DeepFilterNetOnnxBackend
from voxhear.stages.audio.diarization import Turn
from voxhear.stages.audio.separation import estimate_speech, split_exact
from voxhear.stages.talk.activity import frame_activity, frame_states, padded_states, sample_mask
from voxhear.stages.talk.attribution import NOT_THIS_FACE, attribute, lost_voices, silent_for_rivals, unsaid_turns
from voxhear.stages.talk.stage import clip_windows
from voxhear.stages.talk.tracks import (
    LIMIT,
    background_leak_db,
    energy_db,
    read_int24,
    split_tracks,
    write_int24,
)


def test_frame_activity_and_states_follow_the_turns():
    turns = [Turn(0.0, 1.0, "A"), Turn(0.8, 2.0, "B")]
    active = frame_activity(turns, ["A", "B"], start_frame=0, n_frames=60, fps=25.0)
    assert active[0, :25].all() and not active[0, 25:].any()
    assert active[1, 20:50].all() and not active[1, :20].any() and not active[1, 50:].any()
    states = frame_states(active[0], active[1])
    assert (states[:20] == STATE_TALK).all() and (states[20:25] == STATE_BOTH).all()
    assert (states[25:50] == STATE_LISTEN).all() and (states[50:] == STATE_SILENCE).all()


def test_padding_widens_speech_into_silence_only_and_never_makes_both():
    # Self talks 0-1 s, the other party 1.1-2 s and 2.6-3 s (25 fps); pads of 0.1 s.
    turns = [Turn(0.0, 1.0, "A"), Turn(1.1, 2.0, "B"), Turn(2.6, 3.0, "B")]
    active = frame_activity(turns, ["A", "B"], start_frame=0, n_frames=100, fps=25.0)
    padded = frame_activity(turns, ["A", "B"], start_frame=0, n_frames=100, fps=25.0, pad_s=0.1)
    states = padded_states(active[0], active[1], padded[0], padded[1])
    assert STATE_BOTH not in states  # the 0.1 s gap is reached by both pads, yet no frame is both
    assert (states[:26] == STATE_TALK).all()  # A's turn, then the gap's frame nearer to A's end
    assert (states[26:50] == STATE_LISTEN).all()  # the frame nearer to B's start, then B's turn
    assert (states[50:52] == STATE_LISTEN).all() and (states[52:62] == STATE_SILENCE).all()  # B's end padded
    assert (states[62:77] == STATE_LISTEN).all() and (states[77:] == STATE_SILENCE).all()
    # Without pads, the plain states.
    assert (padded_states(active[0], active[1], active[0], active[1]) == frame_states(active[0], active[1])).all()


def test_frame_activity_is_on_the_source_timeline():
    active = frame_activity([Turn(4.0, 5.0, "A")], ["A"], start_frame=100, n_frames=25, fps=25.0)
    assert active.all()


def test_sample_mask_pads_and_ramps_without_exceeding_one():
    mask = sample_mask([Turn(1.0, 2.0, "A"), Turn(1.5, 3.0, "A")], 0, 4 * 16000, 16000, pad_s=0.1, ramp_s=0.02)
    assert mask.max() == 1.0 and mask.min() == 0.0
    assert mask[int(0.85 * 16000)] == 0 and mask[int(0.95 * 16000)] == 1 and mask[int(3.05 * 16000)] == 1
    assert 0 < mask[int(0.9 * 16000) + 10] < 1  # inside the raised-cosine edge


def _scores(active_self: np.ndarray, talking: float, listening: float) -> np.ndarray:
    return np.where(active_self, talking, listening).astype(np.float32)


def test_attribution_picks_the_speaker_whose_turns_move_the_face():
    turns = [Turn(0, 2, "S0"), Turn(2, 4, "S1"), Turn(4, 6, "S0")]
    active = frame_activity(turns, ["S0", "S1"], 0, 150, 25.0)
    decision = attribute(_scores(active[1], 3.5, -0.5), active, ["S0", "S1"], 10, 1.5, 0.75, 1.0)
    assert decision.self_speaker == "S1" and decision.margin > 0
    listener = attribute(np.full(150, -1.0, np.float32), active, ["S0", "S1"], 10, 1.5, 0.75, 1.0)
    assert listener.self_speaker == "" and listener.margin > 0


def test_attribution_is_ambiguous_near_the_threshold_or_with_two_talking_speakers():
    active = frame_activity([Turn(0, 2, "S0"), Turn(2, 4, "S1")], ["S0", "S1"], 0, 100, 25.0)
    near = attribute(_scores(active[0], 1.6, -1.0), active, ["S0", "S1"], 10, 1.5, 0.75, 1.0)
    assert near.margin < 0
    both = attribute(_scores(active[0], 3.5, 3.0), active, ["S0", "S1"], 10, 1.5, 0.75, 1.0)
    assert both.self_speaker == "S0" and both.margin < 0


def test_two_faces_on_screen_cannot_share_a_voice():
    # S1 talks in the middle; both faces of a two-shot react to it, the right one more strongly.
    turns = [Turn(0, 2, "S0"), Turn(2, 4, "S1")]
    active = frame_activity(turns, ["S0", "S1"], 0, 100, 25.0)
    args = (active, ["S0", "S1"], 10, 1.5, 0.75, 1.0)
    weak = attribute(_scores(active[1], 2.4, -0.5), *args)
    strong = attribute(_scores(active[1], 4.6, -0.5), *args)
    assert weak.self_speaker == strong.self_speaker == "S1"
    assert lost_voices(weak, "v-face1-0", strong, "v-face0-0") == {"S1"}
    assert not lost_voices(strong, "v-face0-0", weak, "v-face1-0")
    # The weaker face gives S1 up; S0 does not move it, so it is a listener.
    again = attribute(_scores(active[1], 2.4, -0.5), *args, exclude=frozenset({"S1"}))
    assert again.self_speaker == ""
    # A tie is decided by key, the same way from both sides.
    assert lost_voices(weak, "b", weak, "a") == {"S1"} and not lost_voices(weak, "a", weak, "b")


def test_a_voice_split_by_diarization_is_one_person_when_the_face_talks_with_both_parts():
    # S0 and S2 are one person's voice split into two speakers; S1 is the other party.
    turns = [Turn(0, 2, "S0"), Turn(2, 4, "S1"), Turn(4, 6, "S2")]
    speakers = ["S0", "S1", "S2"]
    active = frame_activity(turns, speakers, 0, 150, 25.0)
    scores = _scores(active[0] | active[2], 3.5, -0.5)
    merged = attribute(scores, active, speakers, 10, 1.5, 0.75, 1.0, merge_voices=True)
    assert set(merged.self_speakers) == {"S0", "S2"} and merged.margin > 0
    # Without merging the second part is a runner-up too close to call.
    assert attribute(scores, active, speakers, 10, 1.5, 0.75, 1.0).margin < 0
    # A part whose evidence is only inside the band (1.8: between 1.5 and 2.25) is not merged.
    unsure = _scores(active[0], 3.5, 0.0) + _scores(active[2], 1.8, 0.0)
    doubt = attribute(unsure, active, speakers, 10, 1.5, 0.75, 1.0, merge_voices=True)
    assert doubt.evidence["S2"] == pytest.approx(1.8) and doubt.self_speakers == ("S0",)
    # A rival face that talks with S2 more strongly takes just that part.
    rival = attribute(_scores(active[2], 4.5, -0.5), active, speakers, 10, 1.5, 0.75, 1.0, merge_voices=True)
    assert lost_voices(merged, "v-face1-0", rival, "v-face0-0") == {"S2"}


def test_in_a_two_shot_a_voice_the_other_face_is_silent_for_is_this_faces_split_voice():
    """S0 and S2 are this face's voice split in two, S2 (2.5) 1.8 logits below S0 (past the runner-up
    margin, so a clear winner without the other face); S1 is the other face's. The other face stays
    silent for S0 and S2 and talks with S1: S2 is merged. Without a face beside it, or where that
    face also talks with S2, or where this face's lips are only inside the band, S2 is not merged."""
    turns = [Turn(0, 2, "S0"), Turn(2, 4, "S1"), Turn(4, 6, "S2")]
    speakers = ["S0", "S1", "S2"]
    active = frame_activity(turns, speakers, 0, 150, 25.0)
    args = (active, speakers, 10, 1.5, 0.75, 1.0)
    own = _scores(active[0], 4.3, -0.5) + _scores(active[2], 3.0, 0.0)
    beside = attribute(_scores(active[1], 4.0, -0.5), *args)
    silent = silent_for_rivals([beside], 1.5)
    assert silent == {"S0", "S2"}
    merged = attribute(own, *args, merge_voices=True, rival_silent=silent)
    assert merged.self_speakers == ("S0", "S2") and merged.margin > 0
    assert attribute(own, *args, merge_voices=True).self_speakers == ("S0",)  # nobody beside it
    assert attribute(own, *args, rival_silent=silent).self_speakers == ("S0",)  # merging off
    talking_too = attribute(_scores(active[1] | active[2], 4.0, -0.5), *args)
    assert silent_for_rivals([beside, talking_too], 1.5) == {"S0"}
    unsure = _scores(active[0], 4.3, -0.5) + _scores(active[2], 2.4, 0.0)  # S2 at 1.9: inside the band
    assert attribute(unsure, *args, merge_voices=True, rival_silent=silent).self_speakers == ("S0",)
    assert silent_for_rivals([], 1.5) == frozenset()
    # Lips that also move when nobody speaks (a pause at 4.0) are no evidence beyond the margin.
    longer = frame_activity(turns, speakers, 0, 175, 25.0)  # the track runs on 1 s after the turns
    restless = np.concatenate([own, np.full(25, 4.0, np.float32)])
    moving = attribute(restless, longer, speakers, 10, 1.5, 0.75, 1.0, merge_voices=True, rival_silent=silent)
    assert moving.evidence["<pause>"] == pytest.approx(4.0) and moving.self_speakers == ("S0",)


def test_a_self_turn_the_face_does_not_say_goes_to_someone_else():
    """A voice cluster that also holds an off-screen voice: its turns where the lips stay still
    are relabelled, those where they move keep the label; an overlapped or too short turn keeps it."""
    fps = 25.0
    scores = np.full(250, -1.5)  # 10 s track starting at frame 50 (2 s)
    scores[0:50] = 3.0  # 2-4 s: the face talks
    turns = [
        Turn(2.0, 4.0, "A"),  # lips move: this face
        Turn(4.5, 6.5, "A"),  # lips still: not this face
        Turn(7.0, 9.0, "A"),  # lips still but overlapped all along by B: cannot tell
        Turn(7.0, 9.0, "B"),
        Turn(10.0, 10.2, "A"),  # lips still, but only 5 frames: too little to judge
    ]
    out = unsaid_turns(turns, {"A"}, scores, start_frame=50, fps=fps, min_frames=10, below=0.5)
    assert [t.speaker for t in out] == ["A", "A" + NOT_THIS_FACE, "A", "B", "A"]
    assert [(t.start, t.end) for t in out] == [(t.start, t.end) for t in turns]
    # Other speakers' turns are never touched, however the face moves.
    assert unsaid_turns(turns, set(), scores, 50, fps, 10, 0.5) == turns


def test_attribution_without_speech_has_no_self():
    active = np.zeros((1, 50), bool)
    decision = attribute(np.zeros(50, np.float32), active, ["S0"], 10, 1.5, 0.75, 1.0)
    assert decision.self_speaker == "" and decision.margin == float("inf")


def test_tracks_add_up_to_the_mix_exactly_after_a_flac_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    n = 16000
    mix = rng.integers(-LIMIT // 4, LIMIT // 4, n)
    speech = (mix * 0.7 + rng.normal(0, 1000, n)).astype(np.int64)
    self_mask = sample_mask([Turn(0.1, 0.5, "A")], 0, n, 16000, 0.05, 0.02)
    other_mask = sample_mask([Turn(0.4, 0.9, "B")], 0, n, 16000, 0.05, 0.02) * (1 - self_mask)
    tracks = split_tracks(mix, speech, self_mask, other_mask)
    back = {}
    for name, values in tracks.items():
        write_int24(tmp_path / f"{name}.flac", values, 16000)
        back[name] = read_int24(tmp_path / f"{name}.flac", 0, n)
        assert np.array_equal(back[name], values)
    assert np.array_equal(back["self"] + back["other"] + back["background"], back["mix"])
    assert not back["self"][int(0.6 * n) :].any() and not back["other"][: int(0.3 * n)].any()


def test_a_background_that_would_clip_is_an_error_not_a_wrapped_sample():
    mix = np.full(10, LIMIT - 10, np.int64)
    with pytest.raises(ValueError, match="clip"):
        split_tracks(mix, -mix, np.ones(10), np.zeros(10))


@pytest.mark.parametrize(
    "frames,expected",
    [
        (40, []),
        (50, [(0, 50)]),
        (500, [(0, 500)]),
        (501, [(0, 250), (250, 501)]),
        (1200, [(0, 400), (400, 800), (800, 1200)]),
    ],
)
def test_clip_windows_stay_within_the_length_range(frames, expected):
    assert clip_windows(frames, 25.0, 2.0, 20.0) == expected


def test_the_other_faces_of_the_shot_are_found_and_their_asd_computed_once(tmp_path, monkeypatch):
    from voxhear.stages.talk.config import TalkConfig
    from voxhear.pipeline.records import FaceTrackRecord
    from voxhear.pipeline.stage import RunContext
    from voxhear.stages.faces.stage import _link_co_visible
    from voxhear.stages.talk.stage import TalkStage

    faces = tmp_path / "faces"
    faces.mkdir()

    def track(key: str, first: int, last: int) -> Path:
        path = faces / f"{key}.npz"
        frames = np.arange(first, last + 1)
        np.savez(path, frame=frames, box=np.zeros((len(frames), 4), np.float32))
        return path

    own = track("v-face0-00000400", 10, 50)
    track("v-face1-00001200", 30, 70)  # same shot, on screen with face0
    track("v-face2-00002200", 55, 75)  # same shot, after face0 has gone
    track("v-face0-00004000", 100, 120)  # the next shot: a different shot's rows, never linked

    def record(key: str, first: int, last: int) -> FaceTrackRecord:
        return FaceTrackRecord(
            source_uri="v.mp4",
            source_id="v",
            frames_uri=str(faces / f"{key}.npz"),
            start_frame=0,
            end_frame=80,
            track_start_frame=first,
            track_end_frame=last + 1,
        )

    shot_rows = [
        record("v-face0-00000400", 10, 50),
        record("v-face1-00001200", 30, 70),
        record("v-face2-00002200", 55, 75),
        FaceTrackRecord(source_uri="v.mp4", source_id="v"),
    ]
    _link_co_visible(shot_rows)  # what the face stage does once all tracks of the shot are written
    row = shot_rows[0]
    assert row.co_visible_frames_uris == [str(faces / "v-face1-00001200.npz")]
    assert shot_rows[2].co_visible_frames_uris == [str(faces / "v-face1-00001200.npz")]
    stage = TalkStage(TalkConfig(), RunContext(tmp_path / "run", model_store=None))
    computed = []

    def fake_asd(track_row, boxes, fps):  # the plumbing only: which tracks, which frames, cached
        computed.append((track_row.track_start_frame, len(boxes)))
        return np.full(len(boxes), float(track_row.track_start_frame), np.float32)

    monkeypatch.setattr(stage, "_asd_scores", fake_asd)
    arrays = dict(np.load(own))
    found = [(key, start, scores[0]) for key, start, scores in stage._co_visible(row, arrays, 25.0)]
    assert found == [("v-face1-00001200", 30, 30.0)]
    assert computed == [(30, 41)]
    again = list(stage._co_visible(row, arrays, 25.0))
    assert len(again) == 1 and computed == [(30, 41)]  # read back from work/v/talk, not recomputed


# Diarized turns of faces-wild/edtalk_uncrop_Obama.mp4 (the store's pyannote pipeline, 16 kHz mix).
OBAMA_TURNS = [
    (0.031, 3.001),
    (3.507, 5.853),
    (7.203, 7.945),
    (8.553, 10.443),
    (10.780, 12.873),
    (13.480, 15.657),
    (16.653, 18.307),
    (19.235, 20.062),
]


def test_background_leak_is_the_leaked_share_of_the_speech_not_the_recording_snr():
    """Issue 14 section 4: clean single-speaker speech was rejected as separation_leakage, the
    separator's harmless residual (~30 dB under the speech) measured against a near-silent floor."""
    video = MEDIA / "faces-wild" / "edtalk_uncrop_Obama.mp4"
    if not (video.exists() and (SHARED_MODELS / "MODELS.tsv").exists()):
        pytest.skip("needs ../shared/media/faces-wild and ../shared/models")
    rate, fps = 16000, 25.0
    command = ["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(video), "-map", "0:a:0", "-ac", "1"]
    pcm = subprocess.run([*command, "-ar", str(rate), "-f", "s16le", "-"], capture_output=True, check=True).stdout
    recording = (np.frombuffer(pcm, np.int16) / 32768).astype(np.float32)
    store = ModelStore(store_dir=str(SHARED_MODELS), allow_download=False)
    backend = DeepFilterNetOnnxBackend(store.resolve("deepfilternet3").file())
    turns = [Turn(a, b, "A") for a, b in OBAMA_TURNS]
    n = len(recording)
    n_frames = int(n / rate * fps)
    frame_of_sample = (np.arange(n) / (rate / fps)).astype(int).clip(0, n_frames - 1)
    talking = frame_activity(turns, ["A"], 0, n_frames, fps)[0][frame_of_sample]
    mask = sample_mask(turns, 0, n, rate, 0.1, 0.02)

    def figures(mix: np.ndarray, gain: float = 1.0) -> tuple[float, float]:
        """(new, old) figure of `mix` whose speech stem is scaled by `gain` (below 1: speech leaks)."""
        speech_i, background_i = split_exact(mix, estimate_speech(backend, mix, rate))
        tracks = split_tracks(speech_i.astype(np.int64) + background_i, np.rint(speech_i * gain), mask, np.zeros(n))
        bg = tracks["background"]
        return background_leak_db(bg, tracks["mix"], talking), energy_db(bg[talking]) - energy_db(bg[~talking])

    real, _ = figures(recording)
    # The same speech with a studio-quiet floor: the separator's own output taken as the recording.
    studio = np.round(estimate_speech(backend, recording, rate) * 2**23) / 2**23
    clean, old_clean = figures(studio)
    noisy, _ = figures(studio + np.random.default_rng(0).normal(0, 1e-3, n).astype(np.float32))  # -60 dBFS floor
    assert real < -20 and clean < -20 and noisy < -20  # measured -33.0, -32.2, -32.9 dB
    assert old_clean > 10  # the old figure rejected it (12.7 dB)
    # Speech really left in the background is still caught: half of its amplitude, or all of it.
    assert figures(recording, 0.5)[0] > -10 and figures(recording, 0.0)[0] > -3  # -5.8, about 0 dB


def test_words_heard_in_an_unsaid_turn_follow_it_to_the_other_party():
    from voxhear.stages.talk.stage import _with_turn_speakers

    turns = [Turn(0.0, 2.0, "A"), Turn(3.0, 5.0, "A" + NOT_THIS_FACE), Turn(3.0, 5.0, "B")]
    words = [
        {"word": "mine", "start_s": 0.5, "end_s": 0.9, "speaker": "A"},
        {"word": "theirs", "start_s": 3.5, "end_s": 3.9, "speaker": "A"},
        {"word": "also", "start_s": 4.0, "end_s": 4.4, "speaker": "B"},
    ]
    out = _with_turn_speakers(words, turns)
    assert [w["speaker"] for w in out] == ["A", "A" + NOT_THIS_FACE, "B"]
    assert _with_turn_speakers(words, turns[:1]) is words


def test_still_lips_inside_a_self_turn_cut_that_part_out_for_someone_else():
    from voxhear.stages.talk.attribution import still_runs

    # A's turn 0-4 s holds a reply with this face's lips still at 1.6-2.4 s (25 fps), and a short
    # still moment (a pause, 0.2 s) at 3.0-3.2 s; B's turn is someone else's already.
    turns = [Turn(0.0, 4.0, "A"), Turn(4.0, 5.0, "B")]
    scores = np.full(125, 3.0, np.float32)
    scores[40:60] = -1.0
    scores[75:80] = -1.0
    scores[100:] = -1.0
    out = still_runs(turns, {"A"}, scores, 0, 25.0, min_frames=12, below=0.0)
    assert [(t.start, t.end, t.speaker) for t in out] == [
        (0.0, 1.6, "A"),
        (1.6, 2.4, "A" + NOT_THIS_FACE),
        (2.4, 4.0, "A"),
        (4.0, 5.0, "B"),
    ]
    # A run reaching the turn's end takes the end; talking lips throughout leave the turns alone.
    scores[60:100] = -1.0
    assert [(t.start, t.end, t.speaker) for t in still_runs(turns, {"A"}, scores, 0, 25.0, 12, 0.0)][1:3] == [
        (1.6, 4.0, "A" + NOT_THIS_FACE),
        (4.0, 5.0, "B"),
    ]
    assert still_runs(turns, {"A"}, np.full(125, 3.0, np.float32), 0, 25.0, 12, 0.0) == turns


def _talk_stage(tmp_path, **settings):
    from voxhear.pipeline.stage import RunContext
    from voxhear.stages.talk.config import TalkConfig
    from voxhear.stages.talk.stage import TalkStage

    return TalkStage(TalkConfig(**settings), RunContext(run_dir=tmp_path, model_store=ModelStore()))


def test_the_stage_checks_self_turns_against_the_lips_as_configured(tmp_path):
    """TalkStage._lip_checked_turns: the still-run check cuts out a still stretch only when on,
    and the turns come back as the same list when nothing changes (their activity is not redone)."""
    from voxhear.pipeline.records import FaceTrackRecord

    row = FaceTrackRecord(source_uri="v.mp4", source_id="v", track_start_frame=0, track_end_frame=125)
    turns = [Turn(0.0, 4.0, "A"), Turn(4.0, 5.0, "B")]
    scores = np.full(125, 3.0, np.float32)
    scores[40:60] = -1.0  # still lips at 1.6-2.4 s inside A's turn
    cut = _talk_stage(tmp_path)._lip_checked_turns(row, turns, {"A"}, scores, 25.0)
    assert [(t.start, t.end, t.speaker) for t in cut][:3] == [
        (0.0, 1.6, "A"),
        (1.6, 2.4, "A" + NOT_THIS_FACE),
        (2.4, 4.0, "A"),
    ]
    assert _talk_stage(tmp_path, still_run_logit=None)._lip_checked_turns(row, turns, {"A"}, scores, 25.0) is turns
    talking = np.full(125, 3.0, np.float32)
    assert _talk_stage(tmp_path)._lip_checked_turns(row, turns, {"A"}, talking, 25.0) is turns


def test_the_stage_merges_a_voice_the_face_beside_it_is_silent_for_only_when_told(tmp_path):
    """TalkStage._decide with a face on screen beside this one: S2, this face's voice split off
    1.8 logits below its best, is merged when the other face stays silent for it
    (talk.merge_rival_silent_voices), and left to the other party when the setting is off."""
    from voxhear.pipeline.records import FaceTrackRecord

    turns = [Turn(0, 2, "S0"), Turn(2, 4, "S1"), Turn(4, 6, "S2")]
    speakers = ["S0", "S1", "S2"]
    active = frame_activity(turns, speakers, 0, 150, 25.0)
    own = _scores(active[0], 4.3, -0.5) + _scores(active[2], 3.0, 0.0)
    beside = ("v-face1-0", 0, _scores(active[1], 4.0, -0.5))
    row = FaceTrackRecord(
        source_uri="v.mp4",
        source_id="v",
        track_start_frame=0,
        track_end_frame=150,
        frames_uri=str(tmp_path / "v-face0-0.npz"),
    )
    decided = _talk_stage(tmp_path)._decide(row, own, active, turns, speakers, 25.0, [beside])
    assert decided.self_speakers == ("S0", "S2")
    off_stage = _talk_stage(tmp_path, merge_rival_silent_voices=False)
    off = off_stage._decide(row, own, active, turns, speakers, 25.0, [beside])
    assert off.self_speakers == ("S0",)
    assert _talk_stage(tmp_path)._decide(row, own, active, turns, speakers, 25.0, []).self_speakers == ("S0",)


def test_the_stage_pads_frame_states_only_when_told(tmp_path):
    """TalkStage._frame_states: plain states by default; with talk.state_pad_s, padded ones."""
    from voxhear.pipeline.records import FaceTrackRecord

    row = FaceTrackRecord(source_uri="v.mp4", source_id="v", track_start_frame=0, track_end_frame=100)
    turns = [Turn(0.0, 1.0, "A"), Turn(2.0, 3.0, "B")]
    active = frame_activity(turns, ["A", "B"], 0, 100, 25.0)
    plain, self_active, other_active = _talk_stage(tmp_path)._frame_states(
        row, turns, ["A", "B"], active, {"A"}, 100, 25.0
    )
    assert (plain == frame_states(active[0], active[1])).all()
    assert (self_active == active[0]).all() and (other_active == active[1]).all()
    padded, *_ = _talk_stage(tmp_path, state_pad_s=0.1)._frame_states(row, turns, ["A", "B"], active, {"A"}, 100, 25.0)
    assert (padded[25:27] == STATE_TALK).all() and (plain[25:27] == STATE_SILENCE).all()  # after A's end
    assert (padded[47:50] == STATE_LISTEN).all() and (plain[47:50] == STATE_SILENCE).all()  # before B's start


def test_a_voice_cluster_holding_both_people_of_a_two_shot_is_split_by_their_lips():
    """split_between_faces: a cluster A whose first turn face 0 says and third turn face 1 says is
    split in two; its turn neither face clearly says keeps A; B, said by one face only, is left."""
    from voxhear.stages.talk.attribution import SAID_BY, split_between_faces

    fps = 25.0
    turns = [Turn(0, 2, "A"), Turn(2, 4, "B"), Turn(4, 6, "A"), Turn(6, 8, "A")]
    talks = {0: [(0, 50), (50, 100)], 1: [(100, 150)]}  # face: frames where its lips move
    faces = []
    for key in (0, 1):
        scores = np.full(200, -1.0)
        for a, b in talks[key]:
            scores[a:b] = 3.0
        faces.append((f"v-face{key}-0", 0, scores))
    faces[0][2][150:200] = faces[1][2][150:200] = 1.0  # 6-8 s: both half open, nobody clearly
    out = split_between_faces(turns, faces, fps, min_frames=10, talk_logit=1.5, margin=1.0)
    assert [t.speaker for t in out] == [f"A{SAID_BY}v-face0-0", "B", f"A{SAID_BY}v-face1-0", "A"]
    # Every face of the shot decides the same split, whichever it is.
    assert split_between_faces(turns, faces[::-1], fps, 10, 1.5, 1.0) == out
    # Alone on screen, or with the other face's lips too close to call, nothing is split.
    assert split_between_faces(turns, faces[:1], fps, 10, 1.5, 1.0) == turns
    assert split_between_faces(turns, faces, fps, 10, 1.5, 5.0) == turns


def test_words_follow_a_voice_split_between_faces():
    from voxhear.stages.talk.attribution import SAID_BY
    from voxhear.stages.talk.stage import _with_turn_speakers

    turns = [Turn(0.0, 2.0, f"A{SAID_BY}f0"), Turn(3.0, 5.0, f"A{SAID_BY}f1" + NOT_THIS_FACE), Turn(6, 7, "A")]
    words = [
        {"word": w, "start_s": s, "end_s": s + 0.4, "speaker": "A"} for w, s in (("x", 0.5), ("y", 3.5), ("z", 6.1))
    ]
    out = _with_turn_speakers(words, turns)
    assert [w["speaker"] for w in out] == [f"A{SAID_BY}f0", f"A{SAID_BY}f1" + NOT_THIS_FACE, "A"]


def test_the_stage_holds_numpys_blas_to_its_threads(tmp_path, monkeypatch):
    """TalkStage.process runs a track with numpy's BLAS held to `talk.threads` (the voice split's
    matrix products), and leaves the process's own setting as it found it."""
    from threadpoolctl import threadpool_info, threadpool_limits

    from voxhear.pipeline.records import FaceTrackRecord

    def blas_threads() -> set[int]:
        return {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"}

    np.ones((64, 64)) @ np.ones((64, 64))  # BLAS loaded
    seen = []
    stage = _talk_stage(tmp_path, threads=1)
    monkeypatch.setattr(stage, "_track_clips", lambda row: seen.append(blas_threads()) or [])
    # Two threads outside, whatever the machine or its environment gives, so there is something to hold.
    with threadpool_limits(limits=2, user_api="blas"):
        before = blas_threads()
        assert stage.process(FaceTrackRecord(source_uri="v.mp4", source_id="v")) == []
        assert blas_threads() == before == {2}
    assert seen == [{1}]
