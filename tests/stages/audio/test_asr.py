"""ASR: words with times and speakers from the store's faster-whisper model (jfk.flac)."""

from __future__ import annotations

import subprocess

import numpy as np
import pyarrow.parquet as pq
import pytest

from tests.stages.audio.conftest import MEDIA, RATE, load_speech, needs_media, needs_store, write_wav16
from voxhear.stages.audio.config import AsrConfig
from voxhear.benchmarks.evaluation.audio import normalize_words, word_errors
from voxhear.pipeline.records import SourceRecord
from voxhear.pipeline.stage import RunContext
from voxhear.stages.audio.diarization import Turn, rttm_text
from voxhear.stages.audio.stages import AsrStage

pytestmark = [needs_store, needs_media]

JFK = ("and so my fellow americans ask not what your country can do for you "
       "ask what you can do for your country")


@pytest.fixture(scope="module")
def stage(store, tmp_path_factory):
    stage = AsrStage(AsrConfig(), RunContext(run_dir=tmp_path_factory.mktemp("run"), model_store=store))
    stage.setup()
    return stage


def test_words_with_times_and_speakers(stage, tmp_path):
    audio = load_speech("jfk.flac")
    speech = write_wav16(tmp_path / "speech.wav", audio)
    # Two made-up turns split at 6.5 s (between "for you" and "ask what"): words take the turn they fall in.
    turns = [Turn(0.2, 6.5, "SPEAKER_00"), Turn(6.5, len(audio) / RATE - 0.1, "SPEAKER_01")]
    (tmp_path / "turns.rttm").write_text(rttm_text("jfk", turns))
    row = SourceRecord(source_uri="jfk.mp4", source_id="jfk", speech_uri=str(speech),
                       rttm_uri=str(tmp_path / "turns.rttm"), duration_s=len(audio) / RATE)
    [row] = stage.process(row)
    words = pq.read_table(row.words_uri).to_pylist()
    assert row.n_words == len(words) > 15 and row.asr_word_timing in ("faster-whisper", "whisperx-align")
    errors, n = word_errors(JFK.split(), normalize_words([w["word"] for w in words]))
    assert errors / n <= 0.1
    starts = [w["start_s"] for w in words]
    assert starts == sorted(starts) and all(w["end_s"] >= w["start_s"] for w in words)
    assert 0.0 <= starts[0] < 1.5 and words[-1]["end_s"] <= len(audio) / RATE + 0.5
    by_word = {normalize_words([w["word"]])[0]: w for w in words}
    # "americans" is said at about 1.8-2.3 s, "country" last at about 10 s.
    assert 1.0 < by_word["americans"]["start_s"] < 3.0 and by_word["americans"]["speaker"] == "SPEAKER_00"
    assert words[-1]["start_s"] > 8.0 and words[-1]["speaker"] == "SPEAKER_01"
    assert 0 < row.audio_rtf["asr"]


def test_no_turns_give_no_words(stage):
    words, text = stage.transcriber(np.zeros(RATE, np.float32), [])
    assert words == [] and text == ""


def test_pieces_never_reach_past_the_last_sample(stage):
    # faster-whisper asserts that duration - sum(piece lengths) >= 0 (issue 14 section 4): speech
    # from the first sample to the last must not round a piece end up past the signal.
    for n in range(7 * RATE, 7 * RATE + 16):
        duration = n / RATE
        for turns in ([Turn(0.0, duration, "A")], [Turn(0.05, 3.0, "A"), Turn(3.1, duration + 0.05, "B")]):
            pieces = stage.transcriber.clips(turns, duration)
            assert pieces[-1]["end"] <= duration
            assert sum(int(p["end"] * RATE) - int(p["start"] * RATE) for p in pieces) <= n


def test_speech_from_the_first_to_the_last_sample(stage):
    # A real talking head cut mid-word at both ends: Obama's 2010 address (faces-wild, public
    # domain) from 3.37 s, 112009 samples long (7.00056 s, whose end rounded up to 7.001 s and
    # crashed faster-whisper with "non-negative timestamp expected").
    video = MEDIA / "faces-wild" / "edtalk_uncrop_Obama.mp4"
    if not video.exists():
        pytest.skip(f"{video} is not there")
    command = ["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(video), "-map", "0:a:0", "-ac", "1"]
    pcm = subprocess.run([*command, "-ar", str(RATE), "-f", "s16le", "-"], capture_output=True, check=True).stdout
    audio = (np.frombuffer(pcm, np.int16) / 32768).astype(np.float32)[53920:53920 + 112009]
    duration = len(audio) / RATE
    words, text = stage.transcriber(audio, [Turn(0.0, duration, "SPEAKER_00")])
    assert len(words) >= 10 and "explosion" in text.lower()
    assert 0.0 <= words[0].start < 0.5 and words[-1].end <= duration + 0.01
