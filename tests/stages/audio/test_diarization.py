"""Diarization: pyannote with CAM++ on small composed mixes; one, two and no speakers."""

from __future__ import annotations

import numpy as np
import pytest

from tests.stages.audio.conftest import RATE, arctic, load_speech, needs_media, needs_store, write_wav16
from voxhear.stages.audio.config import DiarizationConfig, SeparationConfig
from voxhear.pipeline.records import SourceRecord
from voxhear.pipeline.stage import FilteredError, RunContext
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


def test_rttm_round_trip(tmp_path):
    turns = [Turn(0.5, 1.25, "SPEAKER_00"), Turn(2.0, 3.5, "SPEAKER_01")]
    (tmp_path / "x.rttm").write_text(rttm_text("src", turns))
    assert read_rttm(tmp_path / "x.rttm") == turns


def test_music_only_is_filtered_as_no_speech(tmp_path, store):
    music = load_speech("../background/Kevin_MacLeod_-_Vibe_Ace.hq.ogg")[RATE * 10:RATE * 22]
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
    vectors = {0: near(person, 0.3), 1: near(person, 0.3), 2: near(person, 0.3), 3: near(person, 0.3),
               4: near(other, 0.3), 5: near(other, 0.3)}
    labels = {0: "A", 1: "A", 2: "B", 3: "B", 4: "C", 5: "C"}
    durations = dict.fromkeys(vectors, 2.0)
    renamed = merge_close_speakers(vectors, labels, durations, threshold=0.4)
    assert renamed == {"A": "A", "B": "A", "C": "C"}
    assert merge_close_speakers(vectors, labels, durations, threshold=0.0) == {"A": "A", "B": "B", "C": "C"}
    # A known speaker count is never merged below.
    assert len(set(merge_close_speakers(vectors, labels, durations, threshold=1.9, min_speakers=2).values())) == 2


def test_diarization_input_chooses_the_mix_or_the_separated_speech(tmp_path, monkeypatch):
    from voxhear.pipeline.records import SourceRecord
    from voxhear.pipeline.stage import RunContext
    from voxhear.stages.audio import separation
    from voxhear.stages.audio.config import DiarizationConfig
    from voxhear.stages.audio.diarization import Turn
    from voxhear.stages.audio.stages import DiarizationStage

    read = []

    def fake_read(path):
        read.append(path)
        return np.zeros(16000, np.float32), 16000

    monkeypatch.setattr(separation, "read_mono", fake_read)
    for choice, expected in (("speech", "speech.flac"), ("mix", "mix.wav")):
        stage = DiarizationStage(DiarizationConfig(input=choice), RunContext(tmp_path, model_store=None))
        stage.diarizer = lambda audio, rate: [Turn(0.0, 1.0, "SPEAKER_00")]
        row = SourceRecord(source_uri="v.mp4", source_id="v", audio_uri="mix.wav", speech_uri="speech.flac")
        stage.process(row)
        assert read[-1] == expected
