"""Per-video figures, pooled figures with a bootstrap interval over videos, the worst video, and
DER with overlapped speech scored."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from voxhear.benchmarks.evaluation import evaluate_run, format_table
from voxhear.benchmarks.evaluation.audio import DiarizationMetric, overlap_seconds, read_rttm
from voxhear.benchmarks.evaluation.base import EvalSettings
from voxhear.benchmarks.evaluation.bootstrap import HIGHER, LOWER, resample_indices, video_figures
from voxhear.benchmarks.evaluation.data import RunView, TruthSet
from voxhear.benchmarks.evaluation.matching import Counts
from voxhear.benchmarks.evaluation.talk import AttributionMetric, TalkListenMetric
from voxhear.benchmarks.synth.truth import rttm_text
from voxhear.pipeline.records import STATE_LISTEN, STATE_TALK, ClipRecord, SourceRecord

from .test_eval_audio import _run as write_audio_run
from .test_eval_audio import _truth as write_audio_truth
from .test_talk_metrics import A_CLIPS, VIDEO, make_stems, true_state, write_talk_run, write_truth


def _f1_pool(parts):
    counts = sum(parts, Counts())
    return {"f1": counts.f1 if counts.tp + counts.fp + counts.fn else None, "fn": counts.fn}


def test_bootstrap_of_a_perfect_and_a_broken_video():
    stats = {"easy": Counts(tp=90, fp=0, fn=0), "broken": Counts(tp=0, fp=10, fn=10)}
    pooled, per_video, report = video_figures(stats, _f1_pool, {"f1": HIGHER, "fn": LOWER}, resamples=1000, seed=0)
    assert per_video["easy"]["f1"] == 1.0 and per_video["broken"]["f1"] == 0.0
    assert pooled["f1"] == pytest.approx(180 / 200)  # 2 * 90 / (2 * 90 + 10 + 10)
    f1 = report["f1"]
    assert f1["pooled"] == pooled["f1"] and f1["videos"] == 2 and f1["better"] == HIGHER
    # Resamples: both easy (1.0), both broken (0.0), one each (0.9); each extreme has chance 1/4.
    assert f1["interval"] == [0.0, 1.0]
    assert (f1["worst_video"], f1["worst"]) == ("broken", 0.0)
    # Lower is better: the worst is the highest.
    assert (report["fn"]["worst_video"], report["fn"]["worst"]) == ("broken", 10)
    # A fixed seed reproduces the interval; another seed draws other resamples.
    assert video_figures(stats, _f1_pool, {"f1": HIGHER}, resamples=1000, seed=0)[2]["f1"] == f1
    assert (resample_indices(5, 20, 1) == resample_indices(5, 20, 1)).all()
    assert not (resample_indices(5, 20, 1) == resample_indices(5, 20, 2)).all()


def test_bootstrap_of_identical_videos_is_a_point_and_undefined_figures_are_left_out():
    stats = {"a": Counts(tp=3, fp=1, fn=0), "b": Counts(tp=3, fp=1, fn=0), "empty": Counts()}
    _, per_video, report = video_figures(stats, _f1_pool, {"f1": HIGHER}, resamples=300, seed=0)
    assert per_video["empty"]["f1"] is None
    assert report["f1"]["interval"] == [pytest.approx(6 / 7)] * 2 and report["f1"]["videos"] == 2
    # No resamples, no videos: no interval, nothing to call worst.
    assert video_figures(stats, _f1_pool, {"f1": HIGHER}, resamples=0)[2]["f1"]["interval"] is None
    empty = video_figures({}, _f1_pool, {"f1": HIGHER})[2]["f1"]
    assert empty["pooled"] is None and empty["interval"] is None and empty["worst_video"] is None


# ---- DER with overlap --------------------------------------------------------------------------


def _line(start: float, end: float, speaker: str) -> str:
    return f"SPEAKER x 1 {start:.3f} {end - start:.3f} <NA> <NA> {speaker} <NA> <NA>\n"


def _der_case(tmp_path: Path, hypothesis: str) -> dict:
    write_audio_truth(tmp_path / "truth", np.random.default_rng(0))
    # A speaks 0.5-2.5 s, B 1.5-3.5 s: 1 s of overlapped speech, 4 speaker-seconds in all.
    (tmp_path / "truth" / "synth-0000" / "turns.rttm").write_text(_line(0.5, 2.5, "A") + _line(1.5, 3.5, "B"))
    silence = np.zeros(64000)
    write_audio_run(tmp_path / "run", silence, silence, hypothesis, [])
    truth = TruthSet.open(tmp_path / "truth")
    return DiarizationMetric(EvalSettings()).evaluate(RunView.open(tmp_path / "run", truth), truth)


def test_der_scores_overlapped_speech(tmp_path):
    # One speaker at a time: the overlap's second speaker (1 s of 4) is missed.
    result = _der_case(tmp_path / "one", _line(0.5, 2.0, "s1") + _line(2.0, 3.5, "s2"))
    video = result.per_video["synth-0000"]
    assert video["missed"] == pytest.approx(0.25, abs=1e-4) and video["false_alarm"] == 0.0
    assert video["der"] == pytest.approx(0.25, abs=1e-4)
    assert video["overlap_s"] == pytest.approx(1.0) and video["missed_overlap"] == 1.0
    # The 0.25 s collar takes 0.125 s off each side of the 4 boundaries; 0.75 s of overlap stay missed.
    assert video["missed_c0.25"] == pytest.approx(0.75 / 3.0, abs=1e-4)
    summary = result.summary
    assert summary["collar_s"] == 0.0 and summary["collars_s"] == [0.0, 0.25] and summary["overlap"] == "scored"
    assert summary["der"] == video["der"] and summary["missed_overlap"] == 1.0
    assert set(result.figures) >= {"der", "confusion", "missed", "false_alarm", "der_c0.25", "missed_overlap"}
    assert result.figures["der"]["worst_video"] == "synth-0000" and result.figures["der"]["better"] == LOWER
    # The overlap found: nothing missed.
    video = _der_case(tmp_path / "two", _line(0.5, 2.5, "s1") + _line(1.5, 3.5, "s2")).per_video["synth-0000"]
    assert video["der"] == 0.0 and video["missed_overlap"] == 0.0


def test_overlap_seconds_counts_distinct_speakers_within_the_window():
    reference = [(0.0, 2.0, "A"), (1.0, 3.0, "B"), (2.5, 5.0, "C")]
    # Overlap: 1-2 (A, B) and 2.5-3 (B, C). The hypothesis' two turns of one speaker are no overlap.
    hypothesis = [(0.0, 2.0, "x"), (1.5, 2.0, "x"), (2.5, 3.0, "y"), (2.0, 4.0, "z")]
    assert overlap_seconds(reference, hypothesis, 0.0, 10.0) == pytest.approx((1.5, 0.5))
    assert overlap_seconds(reference, hypothesis, 0.0, 1.5) == pytest.approx((0.5, 0.0))
    assert overlap_seconds(reference, [], 0.0, 10.0) == pytest.approx((1.5, 0.0))


def test_the_truth_rttm_keeps_overlapping_turns():
    text = rttm_text("v", {"A": [(0, 32000)], "B": [(16000, 48000)]})  # 16 kHz samples
    path_turns = [tuple(line.split()[3:5]) + (line.split()[7],) for line in text.splitlines()]
    assert path_turns == [("0.000", "2.000", "A"), ("1.000", "2.000", "B")]


def test_read_rttm_keeps_overlaps(tmp_path):
    path = tmp_path / "t.rttm"
    path.write_text(_line(0, 2, "A") + _line(1, 3, "B"))
    assert read_rttm(path) == [(0.0, 2.0, "A"), (1.0, 3.0, "B")]


# ---- two videos through the talk metrics and the table ------------------------------------------


def _two_video_case(tmp_path: Path) -> Path:
    """synth-0000 predicted perfectly, synth-0001 (same truth) with talk and listen exchanged."""
    stems = make_stems(np.random.default_rng(0))
    write_truth(tmp_path / "truth", stems)
    shutil.copytree(tmp_path / "truth" / VIDEO, tmp_path / "truth" / "synth-0001")
    meta = json.loads((tmp_path / "truth" / "synth-0001" / "meta.json").read_text())
    (tmp_path / "truth" / "synth-0001" / "meta.json").write_text(json.dumps({**meta, "video_id": "synth-0001"}))
    write_talk_run(tmp_path / "good", stems, A_CLIPS)
    flip = {STATE_TALK: STATE_LISTEN, STATE_LISTEN: STATE_TALK}
    bad = [{**c, "state": [flip.get(true_state("A", k), true_state("A", k)) for k in range(c["start"], c["end"])]}
           for c in A_CLIPS]
    write_talk_run(tmp_path / "bad", stems, bad)
    run = tmp_path / "run"
    (run / "manifests").mkdir(parents=True)
    sources = [SourceRecord(source_uri=f"/videos/{v}.mp4", source_id=s, norm_fps=25.0, norm_width=160,
                            norm_height=90) for v, s in ((VIDEO, "src0"), ("synth-0001", "src1"))]
    pq.write_table(SourceRecord.to_table(sources), run / "manifests" / "sources.parquet")
    rows = pq.read_table(tmp_path / "good" / "manifests" / "clips.parquet").to_pylist()
    for row in pq.read_table(tmp_path / "bad" / "manifests" / "clips.parquet").to_pylist():
        rows.append({**row, "source_id": "src1", "source_uri": "/videos/synth-0001.mp4", "key": "1" + row["key"]})
    pq.write_table(pa.Table.from_pylist(rows, schema=ClipRecord.schema()), run / "manifests" / "clips.parquet")
    return tmp_path


def test_talk_metrics_give_per_video_rows_an_interval_and_the_worst_video(tmp_path):
    _two_video_case(tmp_path)
    truth = TruthSet.open(tmp_path / "truth")
    run = RunView.open(tmp_path / "run", truth)
    talk = TalkListenMetric(EvalSettings()).evaluate(run, truth)
    good, bad = talk.per_video[VIDEO], talk.per_video["synth-0001"]
    assert good["macro_f1"] == 1.0 and bad["talk_f1"] == 0.0 and bad["listen_f1"] == 0.0
    assert bad["macro_f1"] == pytest.approx(0.5)  # silence and both right, talk and listen all wrong
    figure = talk.figures["macro_f1"]
    assert figure["pooled"] == talk.summary["macro_f1"] and 0.5 < figure["pooled"] < 1.0
    assert figure["interval"] == [pytest.approx(0.5), 1.0]
    assert (figure["worst_video"], figure["worst"]) == ("synth-0001", pytest.approx(0.5))
    assert talk.figures["ok_macro_f1"]["worst_video"] == "synth-0001"  # kept clips reported separately
    assert talk.figures["talk_f1"]["interval"][0] == 0.0
    attribution = AttributionMetric(EvalSettings()).evaluate(run, truth)
    assert attribution.per_video[VIDEO]["attribution"] == 1.0
    assert attribution.figures["attribution"]["worst_video"] == "synth-0001"
    assert attribution.figures["swapped_share"]["worst"] > 0 and attribution.figures["swapped_share"]["better"] == LOWER

    result = evaluate_run(tmp_path / "run", tmp_path / "truth")
    figures = result["metrics"]["talk_listen"]["figures"]
    assert figures["macro_f1"] == talk.figures["macro_f1"]
    assert set(result["metrics"]["self_other"]["figures"]) >= {"self_si_sdr_total", "self_si_sdr_median",
                                                              "ok_other_si_sdr_total"}
    assert result["metrics"]["faces"]["figures"]["f1"]["videos"] == 2
    json.dumps(result)
    table = format_table(result)
    talk_block = table[table.index("talk_listen:"):table.index("attribution:")]
    assert VIDEO in talk_block and "synth-0001" in talk_block and "all (pooled)" in talk_block
    line = next(x.split() for x in talk_block.splitlines() if x.strip().startswith("macro_f1 "))
    assert line[2:4] == ["[0.500,", "1.000]"] and line[-2:] == ["synth-0001", "higher"]
