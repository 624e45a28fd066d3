"""Diarization: pyannote with CAM++ on small composed mixes; one, two and no speakers."""

from __future__ import annotations

import numpy as np
import pytest

from tests.stages.audio.conftest import RATE, arctic, load_speech, needs_media, needs_store, write_wav16
from voxhear.stages.audio.config import DiarizationConfig, SeparationConfig
from voxhear.pipeline.records import SourceRecord
from voxhear.pipeline.stage import FilteredError, RunContext
from voxhear.stages.runs import runs_of
from voxhear.stages.audio.diarization import Diarizer, Turn, read_rttm, rttm_text, speech_seconds
from voxhear.stages.audio.stages import DiarizationStage, SeparationStage

pytestmark = [needs_store, needs_media]


def compose(pieces: list[tuple[str, str]], gap_s: float = 0.8) -> tuple[np.ndarray, list[Turn]]:
    """Recordings one after another with pauses; the true turns (speaker, file) as placed."""
    audio, turns, t = [np.zeros(int(0.5 * RATE), np.float32)], [], 0.5
    for speaker, name in pieces:
        x = load_speech(name)
        audio += [x, np.zeros(int(gap_s * RATE), np.float32)]
        turns.append(Turn(t, t + len(x) / RATE, speaker))
        t += len(x) / RATE + gap_s
    return np.concatenate(audio), turns


def der(reference: list[Turn], hypothesis: list[Turn]) -> float:
    from pyannote.core import Annotation, Segment
    from pyannote.metrics.diarization import DiarizationErrorRate

    def annotation(turns):
        a = Annotation()
        for i, t in enumerate(turns):
            a[Segment(t.start, t.end), i] = t.speaker
        return a

    return DiarizationErrorRate(collar=0.25)(annotation(reference), annotation(hypothesis))


def noisy_voices(names: str, dim: int, seed: int):
    """person -> a unit "embedding" near that person's random centre (a new one each call)."""
    rng = np.random.default_rng(seed)
    people = {name: rng.standard_normal(dim) for name in names}

    def voice(person: str) -> np.ndarray:
        v = people[person] + 0.3 * rng.standard_normal(dim)
        return v / np.linalg.norm(v)

    return voice


@pytest.fixture(scope="module")
def diarizer(store):
    import torch

    torch.set_num_threads(1)
    return Diarizer(store)


def test_two_speakers_alternating(diarizer):
    aew, axb = [p.name for p in arctic("aew")], [p.name for p in arctic("axb")]
    audio, truth = compose([("aew", aew[0]), ("axb", axb[0]), ("aew", aew[1]), ("axb", axb[2]), ("aew", aew[2])])
    turns = diarizer(audio, RATE)
    assert len({t.speaker for t in turns}) == 2
    assert der(truth, turns) < 0.15
    # The placed recordings include their own leading and trailing silence: less speech is found.
    assert 0.75 * speech_seconds(truth) <= speech_seconds(turns) <= speech_seconds(truth) + 0.5


def test_one_speaker(diarizer):
    audio, truth = compose([("aew", p.name) for p in arctic("aew")])
    turns = diarizer(audio, RATE)
    assert len({t.speaker for t in turns}) == 1
    assert der(truth, turns) < 0.15


def test_voices_decide_who_speaks_and_the_mix_where(diarizer):
    """With `voices`, speech is segmented in the first signal and embedded from the second: the
    same turn layout whose voices track holds one person everywhere is one speaker."""
    aew, axb = [p.name for p in arctic("aew")], [p.name for p in arctic("axb")]
    pieces = [("aew", aew[0]), ("axb", axb[0]), ("aew", aew[1]), ("axb", axb[2]), ("aew", aew[2])]
    mix, truth = compose(pieces)
    assert len({t.speaker for t in diarizer(mix, RATE, voices=mix)}) == 2
    # The voices track: every turn's slot filled with aew's speech, same start and length.
    voices = np.zeros_like(mix)
    filler = np.concatenate([load_speech(name) for name in aew])
    for turn in truth:
        a, b = int(turn.start * RATE), int(turn.end * RATE)
        voices[a:b] = filler[: b - a]
    one_voice = diarizer(mix, RATE, voices=voices)
    assert len({t.speaker for t in one_voice}) == 1
    assert abs(speech_seconds(one_voice) - speech_seconds(diarizer(mix, RATE))) < 0.5


def test_rttm_round_trip(tmp_path):
    turns = [Turn(0.5, 1.25, "SPEAKER_00"), Turn(2.0, 3.5, "SPEAKER_01")]
    (tmp_path / "x.rttm").write_text(rttm_text("src", turns))
    assert read_rttm(tmp_path / "x.rttm") == turns


def test_music_only_is_filtered_as_no_speech(tmp_path, store):
    music = load_speech("../background/Kevin_MacLeod_-_Vibe_Ace.hq.ogg")[RATE * 10 : RATE * 22]
    path = write_wav16(tmp_path / "audio16k.wav", 0.3 * music)
    context = RunContext(run_dir=tmp_path / "run", model_store=store)
    row = SourceRecord(source_uri="music.mp4", source_id="music", audio_uri=str(path), duration_s=12.0)
    separation = SeparationStage(SeparationConfig(), context)
    [row] = separation.process(row)
    stage = DiarizationStage(DiarizationConfig(), context)
    assert stage.resources.gpus == 0 and stage.uses_models
    with pytest.raises(FilteredError) as filtered:
        stage.process(row)
    assert filtered.value.reason == "no_speech"
    assert row.speech_s < DiarizationConfig().min_speech_s and "diarization" in row.audio_rtf


def test_speakers_whose_turn_centroids_are_close_are_merged():
    from voxhear.stages.audio.diarization import merge_close_speakers

    rng = np.random.default_rng(0)
    person, other = rng.normal(size=192), rng.normal(size=192)

    def near(v, noise):
        u = v + noise * rng.normal(size=v.size)
        return u / np.linalg.norm(u)

    # Turns 0-3: one person split into A and B; turns 4-5: somebody else (C).
    vectors = {
        0: near(person, 0.3),
        1: near(person, 0.3),
        2: near(person, 0.3),
        3: near(person, 0.3),
        4: near(other, 0.3),
        5: near(other, 0.3),
    }
    labels = {0: "A", 1: "A", 2: "B", 3: "B", 4: "C", 5: "C"}
    durations = dict.fromkeys(vectors, 2.0)
    renamed = merge_close_speakers(vectors, labels, durations, threshold=0.4)
    assert renamed == {"A": "A", "B": "A", "C": "C"}
    assert merge_close_speakers(vectors, labels, durations, threshold=0.0) == {"A": "A", "B": "B", "C": "C"}
    # A known speaker count is never merged below.
    assert len(set(merge_close_speakers(vectors, labels, durations, threshold=1.9, min_speakers=2).values())) == 2


def test_diarization_input_chooses_the_mix_or_the_separated_speech(tmp_path):
    from types import SimpleNamespace

    from voxhear.pipeline.records import SourceRecord
    from voxhear.pipeline.stage import RunContext
    from voxhear.stages.audio.config import DiarizationConfig
    from voxhear.stages.audio.diarization import Turn
    from voxhear.stages.audio.stages import DiarizationStage

    read = []

    def fake_diarize_file(path, voices_path=None):
        read.append(path if voices_path is None else (path, voices_path))
        return [Turn(0.0, 1.0, "SPEAKER_00")], 1.0

    for choice, expected in (("speech", "speech.flac"), ("mix", "mix.wav"), ("both", ("mix.wav", "speech.flac"))):
        stage = DiarizationStage(
            DiarizationConfig(input=choice, mix_overlap=False), RunContext(tmp_path, model_store=None)
        )
        stage.diarizer = SimpleNamespace(diarize_file=fake_diarize_file)  # type: ignore[assignment]
        row = SourceRecord(source_uri="v.mp4", source_id="v", audio_uri="mix.wav", speech_uri="speech.flac")
        stage.process(row)
        assert read[-1] == expected
        # With the separator's residue returned to the stems, its own speech is what is diarized.
        row = SourceRecord(
            source_uri="v.mp4",
            source_id="v",
            audio_uri="mix.wav",
            speech_uri="speech.flac",
            separated_uri="separated.flac",
        )
        stage.process(row)
        assert read[-1] == (
            expected.replace("speech", "separated") if isinstance(expected, str) else (expected[0], "separated.flac")
        )


def test_the_stage_writes_the_overlap_heard_in_the_mix_whatever_it_diarizes(tmp_path):
    from types import SimpleNamespace

    heard_in = []

    def overlap_file(path, min_s=0.1):
        heard_in.append(path)
        return [(1.0, 1.5)]

    fake = SimpleNamespace(
        diarize_file=lambda path, voices_path=None: ([Turn(0.0, 2.0, "SPEAKER_00")], 2.0), overlap_file=overlap_file
    )
    for mix_overlap in (True, False):
        stage = DiarizationStage(DiarizationConfig(mix_overlap=mix_overlap), RunContext(tmp_path, model_store=None))
        stage.diarizer = fake  # type: ignore[assignment]
        row = SourceRecord(source_uri="v.mp4", source_id="v", audio_uri="mix.wav", speech_uri="speech.flac")
        out = stage.process(row)[0]
        if mix_overlap:
            assert heard_in == ["mix.wav"]  # the mix, though the turns come from the separated speech
            assert [(t.start, t.end) for t in read_rttm(out.overlap_uri)] == [(1.0, 1.5)]
        else:
            assert out.overlap_uri == "" and heard_in == ["mix.wav"]


def test_heard_overlap_goes_to_the_speaker_of_the_nearest_other_turn():
    from voxhear.stages.audio.diarization import with_overlap_turns

    turns = [Turn(0.0, 3.0, "A"), Turn(3.2, 6.0, "B"), Turn(6.0, 8.0, "A"), Turn(12.0, 13.0, "C")]
    regions = [
        (2.6, 3.1),  # inside A's turn, B's starts 0.1 s later: B took the turn early
        (4.0, 4.5),  # inside B's turn: the nearest other turns are A's (1.0 s and 1.5 s away)
        (6.5, 7.0),  # inside A's: B's turn ended 0.5 s before
        (9.0, 9.5),  # nobody diarized there: nobody to take a turn from
        (12.2, 12.6),  # inside C's, every other turn more than 2 s away
        (5.9, 6.1),  # A and B already both talk there (B until 6.0, A from 6.0): two speakers
    ]
    out = with_overlap_turns(turns, regions, max_gap_s=2.0)
    added = sorted(set(out) - set(turns), key=lambda t: t.start)
    assert added == [Turn(2.6, 3.1, "B"), Turn(4.0, 4.5, "A"), Turn(6.5, 7.0, "B")]
    assert with_overlap_turns(turns, [], 2.0) == turns
    # A tighter reach leaves the region inside B's turn alone (A's turns are 1.0 s away).
    tight = with_overlap_turns(turns, regions, max_gap_s=0.5)
    assert not any(t.speaker == "A" and t.start == 4.0 for t in tight)
    # Speech time grows only by the part of a region outside every turn (3.0-3.1 s).
    assert speech_seconds(out) == pytest.approx(speech_seconds(turns) + 0.1)


def test_the_stage_writes_the_heard_overlap_into_the_turns_when_asked(tmp_path):
    from types import SimpleNamespace

    fake = SimpleNamespace(
        diarize_file=lambda path, voices_path=None: ([Turn(0.0, 2.0, "SPEAKER_00"), Turn(2.2, 4.0, "SPEAKER_01")], 4.0),
        overlap_file=lambda path, min_s=0.1: [(1.5, 2.1)],
    )
    found, speech = {}, {}
    for reach in (2.0, None):
        stage = DiarizationStage(
            DiarizationConfig(overlap_neighbour_s=reach), RunContext(tmp_path / str(reach), model_store=None)
        )
        stage.diarizer = fake  # type: ignore[assignment]
        row = SourceRecord(source_uri="v.mp4", source_id="v", audio_uri="mix.wav", speech_uri="speech.flac")
        out = stage.process(row)[0]
        found[reach] = sorted((t.start, t.end, t.speaker) for t in read_rttm(out.rttm_uri))
        speech[reach] = out.speech_s
    assert found[None] == [(0.0, 2.0, "SPEAKER_00"), (2.2, 4.0, "SPEAKER_01")]
    # SPEAKER_01 took the turn 0.7 s early, over SPEAKER_00's last half second.
    assert found[2.0] == [(0.0, 2.0, "SPEAKER_00"), (1.5, 2.1, "SPEAKER_01"), (2.2, 4.0, "SPEAKER_01")]
    # The row's speech time is that of the turns written: 2.0-2.1 s is speech now.
    assert speech == {None: 3.8, 2.0: 3.9}


def test_an_overlap_turn_that_touches_the_speakers_own_turn_joins_it():
    from voxhear.stages.audio.diarization import with_overlap_turns

    turns = [Turn(0.0, 2.0, "A"), Turn(2.0, 4.0, "B")]
    # B heard from 1.6 s, running into its own turn at 2.0: one turn 1.6-4.0.
    out = with_overlap_turns(turns, [(1.6, 2.0)], max_gap_s=2.0)
    assert out == [Turn(0.0, 2.0, "A"), Turn(1.6, 4.0, "B")]


def test_turn_pieces_mask_what_a_whole_recording_mask_would():
    """Refinement embeds each turn's own samples minus overlaps; slicing must not change them."""
    import torch

    from voxhear.stages.audio.diarization import Turn, _turn_pieces

    rng = np.random.default_rng(3)
    rate, n = 100, 6000
    waveform = torch.from_numpy(rng.standard_normal(n).astype(np.float32))
    turns = []
    for _ in range(40):
        start = float(rng.uniform(0, 58))
        turns.append(Turn(round(start, 2), round(min(start + rng.uniform(0.1, 6), 60.0), 2), f"S{rng.integers(3)}"))
    got = {i: piece[keep] for i, piece, keep in _turn_pieces(waveform, rate, turns, 0.5)}
    expected = {}
    for i, turn in enumerate(turns):
        if turn.end - turn.start < 0.5:
            continue
        keep = torch.zeros(n, dtype=torch.bool)
        keep[int(turn.start * rate) : int(turn.end * rate)] = True
        for k, other in enumerate(turns):
            if k != i and other.end > turn.start and other.start < turn.end:
                keep[int(other.start * rate) : int(other.end * rate)] = False
        expected[i] = waveform[keep]
    assert got.keys() == expected.keys() and len(got) > 20
    assert all(torch.equal(got[i], expected[i]) for i in got)


def test_window_cuts_fall_in_the_quietest_moment_near_each_boundary():
    from voxhear.stages.audio.diarization import window_bounds

    rate = 1000
    audio = np.ones(100 * rate, np.float32)
    audio[32_000:32_200] = 0.0  # a pause 2 s after the first nominal cut (30 s)
    audio[57_500:57_600] = 0.0  # and one 2.5 s before the second (60 s)
    bounds = window_bounds(lambda a, b: audio[a:b], len(audio), rate, 30.0)
    assert [b for _, b in bounds][:2] == [32_050, 57_550] and bounds[-1][1] == len(audio)
    assert all(a == previous_b for (_, previous_b), (a, _) in zip(bounds, bounds[1:], strict=False))
    assert len(bounds) == 3  # 90 s nominal cut: the remaining 10 s would be a third of a window
    assert window_bounds(lambda a, b: audio[a:b], len(audio), rate, 0.0) == [(0, len(audio))]
    assert window_bounds(lambda a, b: audio[a:b], len(audio), rate, 70.0) == [(0, len(audio))]


def test_window_speakers_join_by_embedding_but_never_within_one_window():
    from voxhear.stages.audio.diarization import link_window_speakers

    voice = noisy_voices("ABC", 16, seed=0)

    # window 0: A and B; window 1: A and C; window 2: B alone; window 0 also has "X", close to A.
    plan = [("0:s0", "A"), ("0:s1", "B"), ("1:s0", "C"), ("1:s1", "A"), ("2:s0", "B"), ("0:s2", "A")]
    vectors, labels, durations = {}, {}, {}
    for i, (label, person) in enumerate(plan * 3):
        vectors[i], labels[i], durations[i] = voice(person), label, 2.0
    renamed = link_window_speakers(vectors, labels, durations, threshold=0.5)
    groups = {}
    for label, target in renamed.items():
        groups.setdefault(target, set()).add(label)
    # A's speakers of windows 0 and 1 join (only one of window 0's two A labels can), B's join.
    assert renamed["0:s0"] == renamed["1:s1"] or renamed["0:s2"] == renamed["1:s1"]
    assert renamed["0:s1"] == renamed["2:s0"] and renamed["1:s0"] not in {renamed["0:s0"], renamed["0:s1"]}
    assert renamed["0:s0"] != renamed["0:s2"]  # one window's two speakers stay two
    # A bound on the count joins further, still never within a window.
    bounded = link_window_speakers(vectors, labels, durations, threshold=0.01, max_speakers=4)
    assert len(set(bounded.values())) == 4 and bounded["0:s0"] != bounded["0:s1"]


@pytest.mark.slow
def test_a_long_input_diarized_in_windows_keeps_its_two_speakers(store):
    import torch

    torch.set_num_threads(1)
    aew, axb = [p.name for p in arctic("aew")], [p.name for p in arctic("axb")]
    pieces = [("aew", aew[i % len(aew)]) if i % 2 == 0 else ("axb", axb[i % len(axb)]) for i in range(24)]
    audio, truth = compose(pieces, gap_s=0.6)
    assert len(audio) / RATE > 75
    windowed = Diarizer(store, window_s=30.0, merge_threshold=0.4)(audio, RATE)
    assert len({t.speaker for t in windowed}) == 2
    assert der(truth, windowed) < 0.15


def test_overlap_is_heard_where_two_real_voices_talk_at_once(diarizer, tmp_path, monkeypatch):
    """`Diarizer.overlap_file`: two recorded voices, the second starting inside the first; the
    overlap found lies in their shared time, none where one voice talks alone, and reading the file
    in windows that cut through the overlap gives it whole."""
    from voxhear.stages.audio import diarization

    first, second = load_speech(arctic("aew")[0].name), load_speech(arctic("axb")[1].name)
    start = int(1.0 * RATE) + len(first) // 2
    mix = np.zeros(start + len(second) + RATE, np.float32)
    mix[RATE : RATE + len(first)] += first
    mix[start : start + len(second)] += second
    path = tmp_path / "two.wav"
    write_wav16(path, mix)
    # Where each voice has sound (its own quiet lead-in and tail are not speech).
    shared_from, shared_to = start / RATE, (RATE + len(first)) / RATE
    found = diarizer.overlap_file(path)
    assert found, "no overlap heard"
    assert sum(e - s for s, e in found) >= 0.4 * (shared_to - shared_from)
    assert all(shared_from - 0.3 <= s and e <= shared_to + 0.3 for s, e in found)
    # Solo speech alone: no overlap.
    write_wav16(tmp_path / "one.wav", np.concatenate([np.zeros(RATE, np.float32), first, np.zeros(RATE, np.float32)]))
    assert diarizer.overlap_file(tmp_path / "one.wav") == []
    # Windows that cut the overlap in two give the same regions, joined again at the cut.
    monkeypatch.setattr(diarization, "OVERLAP_WINDOW_S", (shared_from + shared_to) / 2)
    windowed = diarizer.overlap_file(path)
    assert sum(e - s for s, e in windowed) >= 0.4 * (shared_to - shared_from)
    assert all(shared_from - 0.3 <= s and e <= shared_to + 0.3 for s, e in windowed)


def test_the_overlap_bound_decides_how_much_overlap_is_heard(diarizer, store, tmp_path):
    """`diarization.overlap_step` / `overlap_min_count` on 17 s of two recorded voices taking
    turns, each turn starting three quarters into the one before (longer than a 10 s chunk, so
    the chunks' votes differ): 0.5 / 1.5 is pyannote's own rounded speaker count exactly; chunks
    every second with a bound of 1.2 hear more of the shared time, a bound of 1.9 less; all of it
    stays within the shared time."""
    import torch

    clips = [load_speech(arctic(v)[i].name) for v, i in (("aew", 0), ("axb", 1), ("aew", 1), ("axb", 2), ("aew", 2))]
    starts = [RATE]
    for clip in clips[:-1]:
        starts.append(starts[-1] + 3 * len(clip) // 4)
    mix = np.zeros(starts[-1] + len(clips[-1]) + RATE, np.float32)
    shared = []
    for i, (at, clip) in enumerate(zip(starts, clips, strict=True)):
        mix[at : at + len(clip)] += clip
        if i:
            shared.append((at / RATE, (starts[i - 1] + len(clips[i - 1])) / RATE))
    path = write_wav16(tmp_path / "turns.wav", mix)
    torch.set_num_threads(1)
    pyannote_count = Diarizer(store, overlap_step=0.5, overlap_min_count=1.5)
    # pyannote's own count, as the stage computed it before these settings: rounded, at least 2.
    pipeline = pyannote_count.pipeline
    segmentations = pipeline.get_segmentations({"waveform": torch.from_numpy(mix)[None], "sample_rate": RATE})
    count = pipeline.speaker_count(segmentations, pipeline._segmentation.model.receptive_field, warm_up=(0.0, 0.0))
    frames = count.sliding_window
    rounded = [
        (max(0.0, frames[i].middle), min(len(mix) / RATE, frames[j - 1].middle + frames.step))
        for i, j in runs_of(np.asarray(count.data).reshape(-1) >= 2)
    ]
    assert pyannote_count._overlap_window(mix, RATE) == rounded
    heard = {}
    for bound, found in (
        ("default", diarizer.overlap_file(path)),
        ("pyannote", pyannote_count.overlap_file(path)),
        ("strict", Diarizer(store, overlap_min_count=1.9).overlap_file(path)),
    ):
        assert all(any(a - 0.3 <= s and e <= b + 0.3 for a, b in shared) for s, e in found), (bound, found)
        heard[bound] = sum(e - s for s, e in found)
    assert heard["default"] > heard["pyannote"] > 0
    assert heard["strict"] < heard["default"]


def _speech_over_music(tmp_path):
    """Real speech (CMU Arctic) for its own length, then 4 s of real music alone; music at -20 dB
    under the speech all along. The separated speech here is the clean recording itself, over a
    faint noise floor."""
    from tests.stages.audio.conftest import MEDIA, RATE, arctic, load_speech, write_wav16
    from voxhear.stages.audio.separation import read_mono, resample

    speech = load_speech(arctic("aew")[0].name)
    music, rate = read_mono(MEDIA / "background" / "Kevin_MacLeod_-_Vibe_Ace.hq.ogg")
    music = resample(music[: rate * 30], rate, RATE)
    n = len(speech) + 4 * RATE
    # A separator's output is never digital silence: a -80 dBFS floor under the voice.
    floor = np.random.default_rng(0).standard_normal(n).astype(np.float32) * 1e-4
    voice = np.concatenate([speech, np.zeros(4 * RATE, np.float32)]) + floor
    bed = music[:n] * (np.sqrt(np.mean(speech**2)) / np.sqrt(np.mean(music[:n] ** 2))) * 10 ** (-20 / 20)
    bed[len(speech) :] *= 10  # the music alone comes up to the speech's level
    return (
        write_wav16(tmp_path / "speech.wav", voice),
        write_wav16(tmp_path / "mix.wav", voice - floor + bed),
        len(speech) / RATE,
        n / RATE,
    )


@needs_media
def test_the_speech_gate_drops_music_read_as_speech_and_keeps_speech_under_music(tmp_path):
    from voxhear.stages.audio.asr import SpeechFile
    from voxhear.stages.audio.speech_gate import gate_turns, speech_share_db

    speech_path, mix_path, speech_s, total_s = _speech_over_music(tmp_path)
    share = speech_share_db(SpeechFile(speech_path), SpeechFile(mix_path))
    assert len(share) == int(total_s * 100)
    # The mix's diarization heard one speaker all through, music included.
    [kept] = gate_turns([Turn(0.0, total_s, "SPEAKER_00")], share, -30.0)
    assert kept.speaker == "SPEAKER_00" and kept.start < 0.5 and abs(kept.end - speech_s) < 0.3
    # A looser bound keeps the music too; a stricter one still keeps the speech, not the music.
    assert gate_turns([Turn(0.0, total_s, "S")], share, -80.0)[-1].end > total_s - 0.2
    assert all(t.end < speech_s + 0.3 for t in gate_turns([Turn(0.0, total_s, "S")], share, -10.0))
    # Runs shorter than 0.1 s are dropped, and nothing past the signal's end is kept.
    assert gate_turns([Turn(0.0, 0.05, "S"), Turn(total_s + 1, total_s + 2, "S")], share, -30.0) == []


def test_the_speech_gate_on_signals_shorter_than_its_window_and_on_digital_silence():
    from voxhear.stages.audio.asr import _ArraySpeech
    from voxhear.stages.audio.speech_gate import gate_turns, speech_share_db

    tone = np.sin(np.arange(480) / 5).astype(np.float32) * 0.1  # 30 ms: 3 frames, fewer than 5
    assert np.allclose(speech_share_db(_ArraySpeech(tone), _ArraySpeech(tone)), 0.0)
    assert speech_share_db(_ArraySpeech(tone[:100]), _ArraySpeech(tone[:100])).size == 0  # under a frame
    silence = np.zeros(16000, np.float32)
    share = speech_share_db(_ArraySpeech(silence), _ArraySpeech(silence))
    assert len(share) == 100 and np.isneginf(share).all()  # digital silence is no speech
    assert gate_turns([Turn(0.0, 1.0, "S")], share, -80.0) == []


@needs_media
def test_the_stage_gates_only_turns_found_in_the_mix(tmp_path):
    from types import SimpleNamespace

    speech_path, mix_path, speech_s, total_s = _speech_over_music(tmp_path)
    whole = [Turn(0.0, total_s, "SPEAKER_00")]
    for choice, gate, gated in (
        ("mix", -30.0, True),
        ("both", -30.0, True),
        ("speech", -30.0, False),
        ("mix", None, False),
    ):
        config = DiarizationConfig(input=choice, speech_gate_db=gate, mix_overlap=False)
        stage = DiarizationStage(config, RunContext(tmp_path / choice, model_store=None))
        stage.diarizer = SimpleNamespace(diarize_file=lambda path, voices_path=None: (whole, total_s))  # type: ignore[assignment]
        row = SourceRecord(source_uri="v.mp4", source_id="v", audio_uri=str(mix_path), speech_uri=str(speech_path))
        [turn] = read_rttm(stage.process(row)[0].rttm_uri)
        assert (abs(turn.end - speech_s) < 0.3) if gated else turn.end == pytest.approx(total_s, abs=1e-3)


def test_the_speech_gate_bound_is_checked():
    from voxhear.pipeline.config import load_config
    from voxhear.pipeline.settings import ConfigError

    assert load_config(None, ["diarization.speech_gate_db=-30"]).diarization.speech_gate_db == -30.0
    with pytest.raises(ConfigError, match="speech_gate_db"):
        load_config(None, ["diarization.speech_gate_db=5"])


def test_a_turn_that_holds_two_voices_is_cut_where_the_voice_changes(store):
    """pyannote's mistake on dense talk: one turn over two people who follow each other after a
    short pause. Whole-turn refinement can only move the turn whole; the sliding windows cut it."""
    import torch

    torch.set_num_threads(1)
    aew, axb = [p.name for p in arctic("aew")], [p.name for p in arctic("axb")]
    audio, truth = compose([("aew", aew[0]), ("axb", axb[0]), ("aew", aew[1]), ("axb", axb[2])], gap_s=0.3)
    waveform = torch.from_numpy(audio)
    # Turns 1-2 of each speaker are right; the last two recordings are one turn of aew.
    found = [
        Turn(truth[0].start, truth[0].end, "A"),
        Turn(truth[1].start, truth[1].end, "B"),
        Turn(truth[2].start, truth[3].end, "A"),
    ]
    whole = Diarizer(store).refine(waveform, RATE, found)
    assert [t.speaker for t in whole] == ["A", "B", "A"]
    cut = Diarizer(store, resegment_window_s=2.0).refine(waveform, RATE, found)
    assert [t.speaker for t in cut] == ["A", "B", "A", "B"]
    assert abs(cut[3].start - truth[3].start) < 0.75
    assert der(truth, cut) < 0.05 < der(truth, whole) - 0.05


def test_window_kmeans_keeps_the_turns_speakers_and_moves_windows_between_them():
    from voxhear.stages.audio.diarization import seeded_kmeans

    voice = noisy_voices("AB", 32, seed=1)

    truth = ["A"] * 6 + ["B"] * 6
    vectors = np.stack([voice(p) for p in truth])
    # The turn labels put two of B's windows under A (one turn spanning both people).
    seeds = ["A"] * 8 + ["B"] * 4
    assert seeded_kmeans(vectors, seeds, rounds=3) == truth
    assert seeded_kmeans(vectors, seeds, rounds=0) == seeds
    # One speaker stays one speaker: the windows do not invent a second.
    assert seeded_kmeans(vectors, ["A"] * 12, rounds=3) == ["A"] * 12


def test_a_turn_is_cut_only_between_runs_of_a_window_or_more():
    from voxhear.stages.audio.diarization import cut_at_speaker_changes, window_starts

    turn = Turn(10.0, 20.0, "A")
    starts, span = window_starts(turn.start, turn.end, 2.0)
    assert span == 2.0 and list(starts) == [10.0 + k for k in range(9)]
    # Windows 0-3 A, a stray B (4), A (5), then B (6-8): one cut, halfway between the centres of
    # windows 5 and 6 (the stray window alone is too short a run and joins the one before it).
    said = {0: "A", 1: "A", 2: "A", 3: "A", 4: "B", 5: "A", 6: "B", 7: "B", 8: "B"}
    assert cut_at_speaker_changes(turn, starts, said, 2.0) == [Turn(10.0, 16.5, "A"), Turn(16.5, 20.0, "B")]
    # A window without an embedding takes its nearest neighbour's speaker; one speaker, no cut.
    assert cut_at_speaker_changes(turn, starts, {0: "B", 8: "B"}, 2.0) == [Turn(10.0, 20.0, "B")]
    # A turn shorter than two windows is one window: relabelled whole, never cut.
    short = Turn(3.0, 6.5, "A")
    starts, span = window_starts(short.start, short.end, 2.0)
    assert list(starts) == [3.0] and span == 3.5
    assert cut_at_speaker_changes(short, starts, {0: "B"}, 2.0) == [Turn(3.0, 6.5, "B")]
