"""The audio metrics (SI-SDR, DER, WER, stage speed) on hand-made truth and run folders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from voxhear.benchmarks.evaluation.audio import (AudioSpeedMetric, DiarizationMetric, SeparationMetric, WordErrorMetric,
                                      normalize_words, si_sdr)
from voxhear.benchmarks.evaluation.base import EvalSettings
from voxhear.benchmarks.evaluation.data import RunView, TruthSet
from voxhear.pipeline.records import SourceRecord
from voxhear.benchmarks.synth.truth import WORDS_SCHEMA

RATE = 16000
DURATION = 4.0


def _write(path: Path, audio: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, audio, RATE, subtype="PCM_24")


def _truth(root: Path, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """One video: A speaks 0.5-1.5 s, B 2-3 s, C (no transcript) 3.2-3.8 s, noise under all."""
    n = int(DURATION * RATE)
    stems = {p: np.zeros(n) for p in "ABC"}
    for p, (s, e) in {"A": (0.5, 1.5), "B": (2.0, 3.0), "C": (3.2, 3.8)}.items():
        stems[p][int(s * RATE):int(e * RATE)] = 0.1 * rng.standard_normal(int(e * RATE) - int(s * RATE))
    stems["background"] = 0.02 * rng.standard_normal(n)
    folder = root / "synth-0000"
    for name, audio in stems.items():
        _write(folder / "stems" / f"{name}.flac", audio)
    _write(folder / "mix.flac", sum(stems.values()))
    (folder / "turns.rttm").write_text("".join(
        f"SPEAKER synth-0000 1 {s:.3f} {e - s:.3f} <NA> <NA> {p} <NA> <NA>\n"
        for p, s, e in (("A", 0.5, 1.5), ("B", 2.0, 3.0), ("C", 3.2, 3.8))))
    words = [("A", 0, "bin"), ("A", 1, "blue"), ("A", 2, "at"), ("A", 3, "f"), ("A", 4, "two"), ("A", 5, "now"),
             ("B", 0, "lay"), ("B", 1, "red"), ("B", 2, "by"), ("B", 3, "k"), ("B", 4, "seven"), ("B", 5, "again")]
    seg = {"A": (0.5, 1.5), "B": (2.0, 3.0)}
    rows = [{"person_id": p, "utterance_index": "AB".index(p), "word_index": i, "word": w, "start_s": None,
             "end_s": None, "segment_start_s": seg[p][0], "segment_end_s": seg[p][1]} for p, i, w in words]
    pq.write_table(pa.Table.from_pylist(rows, schema=WORDS_SCHEMA), folder / "words.parquet")
    (folder / "meta.json").write_text(json.dumps({"video_id": "synth-0000", "fps": 25.0, "duration_s": DURATION,
                                                  "snr_db": 10.0}))
    return stems


def _run(run_dir: Path, speech: np.ndarray, background: np.ndarray, rttm: str, words: list[tuple]) -> None:
    work = run_dir / "work" / "src0"
    _write(work / "speech.flac", speech)
    _write(work / "background.flac", background)
    (work / "turns.rttm").write_text(rttm)
    table = pa.Table.from_pylist([{"word": w, "start_s": s, "end_s": e, "speaker": "S0", "probability": 1.0}
                                  for w, s, e in words])
    pq.write_table(table, work / "words.parquet")
    row = SourceRecord(source_uri="/videos/synth-0000.mp4", source_id="src0", duration_s=DURATION,
                       speech_uri=str(work / "speech.flac"), background_uri=str(work / "background.flac"),
                       rttm_uri=str(work / "turns.rttm"), words_uri=str(work / "words.parquet"),
                       separation_backend="test", audio_rtf={"separation": 0.05, "diarization": 0.02, "asr": 0.1},
                       cpu_s={"separation": 0.4, "diarization": 0.2, "asr": 0.3})
    (run_dir / "manifests").mkdir(parents=True)
    pq.write_table(SourceRecord.to_table([row]), run_dir / "manifests" / "sources.parquet")


@pytest.fixture
def case(tmp_path):
    rng = np.random.default_rng(0)
    stems = _truth(tmp_path / "truth", rng)
    speech_true = stems["A"] + stems["B"] + stems["C"]
    mix = speech_true + stems["background"]
    # Speech estimate with an error exactly 20 dB under the speech (orthogonalised), background = mix - speech.
    error = rng.standard_normal(len(mix))
    error -= error.dot(speech_true) / speech_true.dot(speech_true) * speech_true
    error *= np.sqrt(speech_true.dot(speech_true) / error.dot(error)) * 0.1
    speech = speech_true + error
    return tmp_path, speech_true, mix, speech


def _evaluate(metric_cls, tmp_path):
    truth = TruthSet.open(tmp_path / "truth")
    return metric_cls(EvalSettings()).evaluate(RunView.open(tmp_path / "run", truth), truth)


def test_si_sdr_of_a_known_error():
    rng = np.random.default_rng(1)
    ref = rng.standard_normal(RATE)
    noise = rng.standard_normal(RATE)
    noise -= noise.dot(ref) / ref.dot(ref) * ref
    noise *= np.sqrt(ref.dot(ref) / noise.dot(noise)) * 10 ** (-15 / 20)
    assert si_sdr(3.0 * (ref + noise), ref) == pytest.approx(15.0, abs=0.05)  # scale does not matter


def test_separation_metric_scores_speech_and_background(case):
    tmp_path, speech_true, mix, speech = case
    _run(tmp_path / "run", speech, mix - speech, "", [])
    result = _evaluate(SeparationMetric, tmp_path)
    video = result.per_video["synth-0000"]
    # The stems went through 24-bit FLAC: 20 dB within rounding.
    assert video["speech_si_sdr"] == pytest.approx(20.0, abs=0.1)
    assert video["speech_si_sdri"] == pytest.approx(20.0 - si_sdr(mix, speech_true), abs=0.1)
    assert video["background_si_sdr"] < video["speech_si_sdr"]  # the quieter stem carries the same error
    assert result.summary["missing_videos"] == 0


def test_separation_can_be_scored_against_the_dry_speech(case):
    """`speech_reference="dry"` reads truth/VIDEO/dry/ (the speech before the room): an estimate
    that equals the dry speech scores high there and only as well as the room allows on stems/."""
    tmp_path, speech_true, mix, _ = case
    rng = np.random.default_rng(5)
    video = tmp_path / "truth" / "synth-0000"
    dry = {p: 0.1 * rng.standard_normal(len(mix)) for p in "ABC"}
    for name, audio in dry.items():
        _write(video / "dry" / f"{name}.flac", audio)
    dry_speech = sum(dry.values())
    _run(tmp_path / "run", dry_speech, mix - dry_speech, "", [])
    truth = TruthSet.open(tmp_path / "truth")
    run = RunView.open(tmp_path / "run", truth)
    against_dry = SeparationMetric(EvalSettings(speech_reference="dry")).evaluate(run, truth)
    against_stems = SeparationMetric(EvalSettings()).evaluate(run, truth)
    assert against_dry.per_video["synth-0000"]["speech_si_sdr"] > 60  # equal up to 24-bit rounding
    assert against_stems.per_video["synth-0000"]["speech_si_sdr"] < 0


def test_diarization_metric_with_perfect_swapped_and_partial_hypotheses(case):
    tmp_path, _, mix, speech = case
    perfect = ("SPEAKER x 1 0.500 1.000 <NA> <NA> s1 <NA> <NA>\nSPEAKER x 1 2.000 1.000 <NA> <NA> s2 <NA> <NA>\n"
               "SPEAKER x 1 3.200 0.600 <NA> <NA> s3 <NA> <NA>\n")
    _run(tmp_path / "run", speech, mix - speech, perfect, [])
    result = _evaluate(DiarizationMetric, tmp_path)
    assert result.per_video["synth-0000"]["der"] == 0.0  # labels are mapped optimally
    assert result.per_video["synth-0000"]["n_speakers_found"] == 3

    # B and C given A's label.
    merged = perfect.replace("s2", "s1").replace("s3", "s1")
    (tmp_path / "run").rename(tmp_path / "run_perfect")
    _run(tmp_path / "run", speech, mix - speech, merged, [])
    video = _evaluate(DiarizationMetric, tmp_path).per_video["synth-0000"]
    # The headline collar is 0: speech 1 + 1 + 0.6 = 2.6 s; s1 maps onto A (or B), so 1.6 s are confused.
    assert video["confusion"] == pytest.approx(1.6 / 2.6, abs=1e-3) and video["der"] == video["confusion"]
    # pyannote's collar of 0.25 s is 0.125 s on each side of each boundary: scored speech
    # 0.75 + 0.75 + 0.35 = 1.85 s, of which B and C (1.1 s) are confused.
    assert video["confusion_c0.25"] == pytest.approx(1.1 / 1.85, abs=1e-3)
    assert video["missed"] == 0.0 and video["false_alarm"] == 0.0
    assert video["missed_c0.25"] == 0.0 and video["false_alarm_c0.25"] == 0.0


def test_word_error_rate_normalises_and_leaves_out_untranscribed_speakers(case):
    tmp_path, _, mix, speech = case
    words = [("Bin", 0.5, 0.6), ("blue", 0.6, 0.7), ("at", 0.7, 0.8), ("F2", 0.8, 0.9), ("now.", 0.9, 1.0),
             ("Lay", 2.0, 2.1), ("red", 2.1, 2.2), ("by", 2.2, 2.3), ("K,", 2.3, 2.4), ("7", 2.4, 2.5),
             ("again!", 2.5, 2.6), ("hello", 3.3, 3.5), ("there", 3.5, 3.7)]
    _run(tmp_path / "run", speech, mix - speech, "", words)
    result = _evaluate(WordErrorMetric, tmp_path)
    video = result.per_video["synth-0000"]
    assert video["hyp_words_excluded"] == 2  # C's words: C has no transcript
    assert video["errors"] == 0 and video["wer"] == 0.0
    assert result.summary["ref_words"] == 12


def test_word_error_rate_counts_errors():
    from voxhear.benchmarks.evaluation.audio import word_errors

    assert word_errors("lay red by k seven again".split(), "lay read by k seven".split()) == (2, 6)


def test_normalisation():
    assert normalize_words(["Bimblue", "F2", "now."]) == ["bimblue", "f", "two", "now"]
    assert normalize_words(["S0,", "21", "it's"]) == ["s", "zero", "twenty", "one", "it's"]


def test_audio_speed_reports_each_stage(case):
    tmp_path, _, mix, speech = case
    _run(tmp_path / "run", speech, mix - speech, "", [])
    result = _evaluate(AudioSpeedMetric, tmp_path)
    assert result.summary["separation_rtf"] == 0.05 and result.summary["asr_rtf"] == 0.1
    assert result.summary["separation_cpu_rtf"] == 0.1 and result.summary["diarization_cpu_rtf"] == 0.05


def test_metrics_not_available_without_audio_outputs(tmp_path):
    _truth(tmp_path / "truth", np.random.default_rng(0))
    (tmp_path / "run" / "manifests").mkdir(parents=True)
    row = SourceRecord(source_uri="/videos/synth-0000.mp4", source_id="src0")
    pq.write_table(SourceRecord.to_table([row]), tmp_path / "run" / "manifests" / "sources.parquet")
    for cls in (SeparationMetric, DiarizationMetric, WordErrorMetric, AudioSpeedMetric):
        assert not _evaluate(cls, tmp_path).available
