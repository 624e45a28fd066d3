"""ASR: words with times and speakers from the store's faster-whisper model (jfk.flac)."""

from __future__ import annotations

import subprocess
import tracemalloc

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile

from tests.stages.audio.conftest import MEDIA, RATE, SPEECH, load_speech, needs_media, needs_store, write_wav16
from voxhear.stages.audio.config import AsrConfig
from voxhear.benchmarks.evaluation.audio import normalize_words, word_errors
from voxhear.pipeline.records import SourceRecord
from voxhear.pipeline.stage import RunContext
from voxhear.stages.audio.asr import SpeechFile, _segment_dict
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
    # The separator's own speech is what is transcribed when the stems hold its residue besides
    # (separated_uri): here the stem is silence, so every word comes from separated_uri.
    silence = write_wav16(tmp_path / "stem.wav", np.zeros_like(audio))
    row = SourceRecord(source_uri="jfk.mp4", source_id="jfk", speech_uri=str(silence), separated_uri=str(speech),
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


# --- memory that does not grow with the input (issue 15) -----------------------------------------


def _words(path) -> list[dict]:
    return pq.read_table(path).to_pylist()


def _row(tmp_path, speech, turns, source_id="long") -> SourceRecord:
    (tmp_path / "turns.rttm").write_text(rttm_text(source_id, turns))
    return SourceRecord(source_uri=f"{source_id}.mp4", source_id=source_id, speech_uri=str(speech),
                        rttm_uri=str(tmp_path / "turns.rttm"))


def test_reads_only_the_pieces_of_a_long_input(stage, tmp_path, monkeypatch):
    # 22 minutes of JFK tiled (a 42 MB float32 signal at 16 kHz) with three diarized turns: the
    # stage reads each piece's frames from the file, never the whole file nor a span longer than
    # a piece with its padding, and decodes the same words wherever the turn falls in the file.
    jfk = load_speech("jfk.flac")
    tiles = 120
    speech = write_wav16(tmp_path / "speech.wav", np.tile(jfk, tiles))
    period = len(jfk) / RATE
    turns = [Turn(k * period + 0.3, k * period + 2.6, f"SPEAKER_0{i}") for i, k in enumerate((0, 61, tiles - 1))]
    reads: list[int] = []
    real_read = soundfile.read

    def recording_read(*args, **kwargs):
        data, rate = real_read(*args, **kwargs)
        reads.append(len(data))
        return data, rate

    monkeypatch.setattr(soundfile, "read", recording_read)
    tracemalloc.start()
    try:
        [row] = stage.process(_row(tmp_path, speech, turns))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    cfg = stage.config
    assert len(reads) == len(turns)
    assert max(reads) <= (cfg.piece_s + 2 * cfg.pad_s) * RATE + 16
    assert sum(reads) <= sum(t.end - t.start + 2 * cfg.pad_s for t in turns) * RATE + 16 * len(turns)
    # Python-side allocations (numpy included) stay far below the whole signal's float32 size.
    assert peak < len(jfk) * tiles * 4 / 4
    words = _words(row.words_uri)
    # "and so my fellow americans" in each of the three turns, each in its own speaker and time.
    for i, k in enumerate((0, 61, tiles - 1)):
        said = [w for w in words if w["speaker"] == f"SPEAKER_0{i}"]
        assert "americans" in normalize_words([w["word"] for w in said])
        assert all(k * period < w["start_s"] < k * period + 3.5 for w in said)
    assert 0 < row.audio_rtf["asr"]


def test_pieces_read_from_the_file_give_the_words_of_the_whole_signal(stage, tmp_path, monkeypatch):
    # jfk.flac as it is (44.1 kHz stereo: read and resampled piece by piece) against the whole
    # recording read and resampled at once; two pieces a batch, so that the words' timing crosses
    # batches (one transcribe call per batch) as it crosses them within one call.
    monkeypatch.setattr(stage.transcriber, "batch_size", 2)
    path = SPEECH / "jfk.flac"
    audio = load_speech("jfk.flac")
    edges = [0.2, 2.3, 3.3, 4.4, 6.5, 8.0, 9.3, len(audio) / RATE - 0.1]
    turns = [Turn(a, b, f"SPEAKER_0{i % 2}") for i, (a, b) in enumerate(zip(edges, edges[1:]))]
    monkeypatch.setattr(stage.transcriber, "chunk_s", 2.5)
    piece = SpeechFile(path)
    assert piece.rate == 44100 and piece.length == len(audio)
    for start, stop in ((0, 4000), (12345, 40000), (len(audio) - 3000, len(audio))):
        assert np.array_equal(piece.read(start, stop), audio[start:stop])
    [row] = stage.process(_row(tmp_path, path, turns, "jfk"))
    words = _words(row.words_uri)
    whole, _ = stage.transcriber(audio, turns)
    assert words == [
        {"word": w.word, "start_s": w.start, "end_s": w.end, "speaker": w.speaker, "probability": w.probability}
        for w in whole
    ]
    errors, n = word_errors(JFK.split(), normalize_words([w["word"] for w in words]))
    assert errors / n <= 0.15
    # The batches of one call of faster-whisper's own pipeline over the whole signal give the same
    # segments as one call per batch over the pieces.
    from faster_whisper import BatchedInferencePipeline

    clips = stage.transcriber.clips(turns, len(audio) / RATE)
    assert len(clips) > 4
    segments, _ = BatchedInferencePipeline(stage.transcriber.model).transcribe(
        audio, language="en", clip_timestamps=clips, word_timestamps=True, batch_size=2, beam_size=5,
        without_timestamps=True, vad_filter=False, condition_on_previous_text=False,
    )
    assert stage.transcriber._segments(piece, clips) == [_segment_dict(s) for s in segments]


def test_alignment_reads_each_segment_span(stage, monkeypatch):
    # whisperx's alignment model is not in the store: a stand-in for whisperx.align that slices
    # [start, end) out of the audio as it does shows that each segment is aligned against its own
    # span of the speech, and that its times come back in the whole signal's seconds.
    import torch
    import whisperx

    def align(transcript, model, meta, audio, device, return_char_alignments=False):
        audio = audio if audio.ndim == 2 else audio[None]
        segments = []
        for seg in transcript:
            x = audio[0, int(seg["start"] * RATE) : int(seg["end"] * RATE)].numpy()
            word = {"word": "w", "start": seg["start"] + 0.125, "end": seg["end"], "score": float(np.abs(x).mean())}
            segments.append({"start": seg["start"], "end": seg["end"], "text": seg["text"], "words": [word]})
        return {"segments": segments, "word_segments": [w for s in segments for w in s["words"]]}

    monkeypatch.setattr(whisperx, "align", align)
    monkeypatch.setattr(stage.transcriber, "align_meta", {}, raising=False)
    audio = load_speech("jfk.flac")
    segments = [{"start": s, "end": e, "text": "x", "words": []} for s, e in ((0.0, 1.5), (1.234, 3.5), (7.001, 11.0))]
    got = stage.transcriber._align(SpeechFile(SPEECH / "jfk.flac"), segments)
    want = align(segments, None, None, torch.from_numpy(audio), "cpu")
    times = [t for s in got["segments"] for t in (s["start"], s["end"])]
    assert times == pytest.approx([t for s in segments for t in (s["start"], s["end"])], abs=1e-9)
    for g, w in zip(got["word_segments"], want["word_segments"], strict=True):
        assert (g["start"], g["end"]) == pytest.approx((w["start"], w["end"]), abs=1e-9)
        assert g["score"] == pytest.approx(w["score"], rel=1e-3)


def test_sources_batched_together_get_their_own_words_on_their_own_clocks(store, tmp_path):
    """`asr.rows_per_call` sources in one call (their pieces in shared whisper batches): each gets
    the words it gets alone, on its own clock, with its own speakers; a source without turns gets
    none, and the sources after it are not moved by it. Three real recordings: JFK, and two CMU
    Arctic speakers, with the silent source between them."""
    from tests.stages.audio.conftest import arctic

    cfg = AsrConfig(rows_per_call=4, batch_size=4)
    stage = AsrStage(cfg, RunContext(run_dir=tmp_path / "run", model_store=store))
    assert stage.batch_size == 4  # what Ray's map_batches is given
    stage.setup()
    recordings = {"jfk": load_speech("jfk.flac"), "quiet": np.zeros(3 * RATE, np.float32),
                  "aew": load_speech(arctic("aew")[0].name), "axb": load_speech(arctic("axb")[1].name)}
    rows = []
    for name, audio in recordings.items():
        folder = tmp_path / name
        folder.mkdir()
        seconds = len(audio) / RATE
        turns = [] if name == "quiet" else [Turn(0.1, seconds / 2, f"{name}_A"), Turn(seconds / 2, seconds - 0.05, f"{name}_B")]
        rows.append(_row(folder, write_wav16(folder / "speech.wav", audio), turns, name))
    calls = []
    segments = stage.transcriber._segments

    def counting(speech, clips):
        calls.append(len(clips))
        return segments(speech, clips)

    stage.transcriber._segments = counting
    batched = stage.process_batch([SourceRecord.from_row(r.to_row()) for r in rows])
    assert len(calls) == 1 and calls[0] >= 4  # the pieces of every source with speech, in one call
    stage.transcriber._segments = segments
    for [row], alone_row in zip(batched, rows):
        [alone] = stage.process(SourceRecord.from_row(alone_row.to_row()))
        together, by_itself = _words(row.words_uri), _words(alone.words_uri)
        assert [w["word"] for w in together] == [w["word"] for w in by_itself]
        assert [w["speaker"] for w in together] == [w["speaker"] for w in by_itself]
        # Same times, but for float rounding and faster-whisper's trim of a first word after a pause.
        assert all(abs(a["start_s"] - b["start_s"]) <= 0.05 and abs(a["end_s"] - b["end_s"]) <= 0.05
                   for a, b in zip(together, by_itself))
        seconds = len(recordings[row.source_id]) / RATE
        assert all(0 <= w["start_s"] <= w["end_s"] <= seconds + 0.5 for w in together)
        assert (row.n_words == 0) == (row.source_id == "quiet")
    jfk = [w["word"] for w in _words(batched[0][0].words_uri)]
    errors, n = word_errors(JFK.split(), normalize_words(jfk))
    assert errors / n <= 0.1
