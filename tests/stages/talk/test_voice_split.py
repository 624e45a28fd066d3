"""Overlapped speech split between two real voices by their own spectra (voice_split.py)."""

from __future__ import annotations

import numpy as np

from tests.stages.audio.conftest import RATE, arctic, load_speech, needs_media
from voxhear.stages.audio.diarization import Turn
from voxhear.stages.talk.tracks import split_tracks
from voxhear.stages.talk.voice_split import VoiceSplitSettings, _istft, _stft, self_part

SETTINGS = VoiceSplitSettings()


def si_sdr(estimate: np.ndarray, reference: np.ndarray) -> float:
    alpha = float(estimate @ reference) / float(reference @ reference)
    error = estimate - alpha * reference
    return 10 * np.log10(alpha**2 * float(reference @ reference) / float(error @ error))


def conversation():
    """aew alone, then axb alone, then both at once (their third recordings, at equal level)."""
    aew, axb = (
        [load_speech(p.name).astype(np.float64) for p in arctic("aew")],
        [load_speech(p.name).astype(np.float64) for p in arctic("axb")],
    )
    a_solo, b_solo = np.concatenate(aew[:2]), np.concatenate(axb[:2])
    n = min(len(aew[2]), len(axb[2]))
    a_overlap, b_overlap = aew[2][:n], axb[2][:n] * np.std(aew[2][:n]) / np.std(axb[2][:n])
    speech = np.concatenate([a_solo, b_solo, a_overlap + b_overlap]) * 3000.0
    t1, t2, t3 = len(a_solo) / RATE, (len(a_solo) + len(b_solo)) / RATE, len(speech) / RATE
    turns = [Turn(0.0, t1, "A"), Turn(t1, t2, "B"), Turn(t2, t3, "A"), Turn(t2, t3, "B")]
    overlap = slice(len(a_solo) + len(b_solo), len(speech))
    return speech, turns, overlap, a_overlap * 3000.0, b_overlap * 3000.0


def test_the_stft_pair_gives_the_signal_back():
    x = np.random.default_rng(0).normal(size=12345)
    assert np.allclose(_istft(_stft(x), len(x)), x, atol=1e-9)


@needs_media
def test_two_real_voices_talking_at_once_are_split_by_their_own_solo_spectra():
    speech, turns, overlap, a, b = conversation()
    own = self_part(speech, 0, turns, {"A"}, RATE, 0.0, SETTINGS)
    assert own is not None
    # Outside the overlap nothing is split: the self part there is the speech itself.
    assert np.allclose(own[: overlap.start - RATE // 10], speech[: overlap.start - RATE // 10], atol=1e-6)
    # In the overlap, each party's part is nearer its own voice than the whole speech is (the whole
    # speech is what the self track held before, about 0 dB for either voice; the split gives 3.6
    # dB each here, from 6-7 s of solo speech per voice).
    mine, theirs = own[overlap], speech[overlap] - own[overlap]
    before_a, before_b = si_sdr(speech[overlap], a), si_sdr(speech[overlap], b)
    assert abs(before_a) < 1.5 and abs(before_b) < 1.5
    assert si_sdr(mine, a) > before_a + 2.5
    assert si_sdr(theirs, b) > before_b + 2.5
    # From the other face's side (self = B) the same split comes out the other way round.
    other_side = self_part(speech, 0, turns, {"B"}, RATE, 0.0, SETTINGS)
    assert si_sdr(other_side[overlap], b) > before_b + 2.5


@needs_media
def test_nothing_is_split_without_overlap_or_without_a_voice_to_learn_from():
    speech, turns, overlap, _, _ = conversation()
    solo_turns = turns[:2]
    assert self_part(speech[: overlap.start], 0, solo_turns, {"A"}, RATE, 0.0, SETTINGS) is None
    assert self_part(speech, 0, [t for t in turns if t.speaker == "A"], {"A"}, RATE, 0.0, SETTINGS) is None
    # B never speaks alone: no dictionary for B, so the overlap stays with self as before.
    only_together = [turns[0], turns[2], turns[3]]
    assert self_part(speech, 0, only_together, {"A"}, RATE, 0.0, SETTINGS) is None


def test_moved_speech_goes_from_the_self_track_to_the_other_and_the_tracks_still_add_up():
    rng = np.random.default_rng(1)
    n = 1600
    mix = rng.integers(-100_000, 100_000, n)
    speech = (mix * 0.8).astype(np.int64)
    self_mask, other_mask = np.ones(n), np.zeros(n)
    moved = np.zeros(n)
    moved[800:] = speech[800:] * 0.25
    tracks = split_tracks(mix, speech, self_mask, other_mask, moved)
    assert np.array_equal(tracks["self"] + tracks["other"] + tracks["background"], mix)
    assert not tracks["other"][:800].any()
    assert np.allclose(tracks["other"][800:], speech[800:] * 0.25, atol=1)
    assert np.array_equal(tracks["self"][:800], speech[:800])


@needs_media
def test_the_stage_moves_the_other_voice_only_where_both_masks_are_open_and_only_when_on(tmp_path):
    """TalkStage._other_voice_in_overlap: reads the speech stem around the clip, splits, and
    returns the other party's part weighted by the masks' overlap; None with the setting off."""
    import soundfile as sf

    from voxhear.pipeline.models import ModelStore
    from voxhear.pipeline.records import FaceTrackRecord
    from voxhear.pipeline.stage import RunContext
    from voxhear.stages.talk.config import TalkConfig
    from voxhear.stages.talk.stage import TalkStage

    speech, turns, overlap, _, b = conversation()
    path = tmp_path / "speech.flac"
    sf.write(path, (np.round(speech).astype(np.int64) << 8).astype(np.int32), RATE, subtype="PCM_24")
    row = FaceTrackRecord(source_uri="v.mp4", source_id="v", speech_uri=str(path))
    # The clip: the last 6 s, so the solo speech of A lies in its context, not in the clip.
    start = len(speech) - 6 * RATE
    count = 6 * RATE
    both = np.zeros(count)
    both[overlap.start - start :] = 1.0

    def moved(**settings):
        stage = TalkStage(TalkConfig(**settings), RunContext(run_dir=tmp_path, model_store=ModelStore()))
        return stage._other_voice_in_overlap(row, turns, {"A"}, start, count, both)

    assert moved(voice_split_bases=None) is None
    part = moved()
    assert part is not None and not part[: overlap.start - start].any()
    assert si_sdr(part[overlap.start - start :], b[: count - (overlap.start - start)]) > 2.5
    # Without context the clip holds no solo speech of A: nothing to learn A's voice from.
    assert moved(voice_split_context_s=0.0) is None


def test_added_overlap_turns_take_the_faces_speaker_or_the_nearest_other_speaker():
    from voxhear.stages.talk.overlap import OVERLAP_OTHER, OVERLAP_SELF
    from voxhear.stages.talk.voice_split import voiced_overlap_turns

    turns = [Turn(0.0, 2.0, "A"), Turn(2.0, 4.0, "B"), Turn(10.0, 12.0, "C")]
    added = [
        Turn(3.0, 3.5, OVERLAP_SELF),
        Turn(1.0, 1.5, OVERLAP_OTHER),
        Turn(11.0, 11.5, OVERLAP_OTHER),
        Turn(30.0, 31.0, OVERLAP_OTHER),
    ]
    voiced = voiced_overlap_turns(added, turns, {"A"}, "A", OVERLAP_SELF)
    # This face's added turn is its speaker's; the others' go to the nearest other speaker in time,
    # and one with nobody within 5 s is left out.
    assert [(t.start, t.speaker) for t in voiced] == [(3.0, "A"), (1.0, "B"), (11.0, "C")]
    assert voiced_overlap_turns(added[:1], turns, {"A"}, "", OVERLAP_SELF) == []  # no own speaker: nothing


@needs_media
def test_added_overlap_is_split_too_and_never_moves_speech_whole(tmp_path):
    import soundfile as sf

    from voxhear.pipeline.models import ModelStore
    from voxhear.pipeline.records import FaceTrackRecord
    from voxhear.pipeline.stage import RunContext
    from voxhear.stages.talk.config import TalkConfig
    from voxhear.stages.talk.stage import TalkStage

    speech, turns, overlap, a, _ = conversation()
    diarized = [t for t in turns if not (t.speaker == "A" and t.start > 0)]  # the overlap heard as B's alone
    added = [Turn(overlap.start / RATE, overlap.stop / RATE, "A")]  # the lips say A talks too
    own = self_part(speech, 0, diarized, {"A"}, RATE, 0.0, SETTINGS, added)
    assert own is not None and si_sdr(own[overlap], a) > si_sdr(speech[overlap], a) + 2.5

    # Through the stage: with A's solo speech the added turn opens both masks and A's voice moves
    # into the self track; without it (no dictionary for A) the split cannot act, and the tracks
    # are made from the diarized turns alone: B keeps the whole overlap, self gets none of it.
    path = tmp_path / "speech.flac"
    sf.write(path, (np.round(speech).astype(np.int64) << 8).astype(np.int32), RATE, subtype="PCM_24")
    row = FaceTrackRecord(source_uri="v.mp4", source_id="v", speech_uri=str(path))
    stage = TalkStage(TalkConfig(), RunContext(run_dir=tmp_path, model_store=ModelStore()))
    mix = np.round(speech).astype(np.int64)
    ints = mix.copy()
    tracks, split = stage._tracks(row, mix, ints, diarized, added, {"A"}, 0, len(mix))
    inner = slice(overlap.start + RATE // 5, overlap.stop)  # past the pads and ramps of B's turn start
    assert split and si_sdr(tracks["self"][inner].astype(float), a[inner.start - overlap.start :]) > 2.5
    only_b = [t for t in diarized if t.speaker == "B"]
    tracks, split = stage._tracks(row, mix, ints, only_b, added, {"A"}, 0, len(mix))
    assert not split
    tracks, _ = stage._tracks(row, mix, ints, only_b, [], {"A"}, 0, len(mix))
    assert not tracks["self"].any() and np.array_equal(tracks["other"][inner], ints[inner])


def test_the_stage_gives_the_tracks_the_added_overlap_only_when_both_settings_are_on(tmp_path):
    from voxhear.pipeline.models import ModelStore
    from voxhear.pipeline.stage import RunContext
    from voxhear.stages.talk.config import TalkConfig
    from voxhear.stages.talk.overlap import OVERLAP_OTHER, OVERLAP_SELF
    from voxhear.stages.talk.stage import TalkStage

    turns = [Turn(0.0, 2.0, "A"), Turn(2.0, 4.0, "B")]
    extra = [Turn(3.0, 3.5, OVERLAP_SELF), Turn(1.0, 1.5, OVERLAP_OTHER)]

    def voiced(**settings):
        stage = TalkStage(TalkConfig(**settings), RunContext(run_dir=tmp_path, model_store=ModelStore()))
        return [(t.start, t.speaker) for t in stage._voiced_overlap(extra, turns, {"A"}, "A")]

    assert voiced() == [(3.0, "A"), (1.0, "B")]
    assert voiced(voice_split_added_overlap=False) == []
    assert voiced(voice_split_bases=None) == []
