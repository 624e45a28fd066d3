"""The shot metric and `voxhear eval` end to end on hand-made runs."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from voxhear.benchmarks.evaluation import add_arguments, evaluate_run, format_table, run_from_args

from .eval_helpers import clips_from_starts, write_run, write_truth_video


@pytest.fixture()
def truth(tmp_path: Path) -> Path:
    out = tmp_path / "synth-out"
    write_truth_video(out / "truth", "synth-0000", [0, 50, 100, 150], n_frames=200)
    write_truth_video(out / "truth", "synth-0001", [0, 30], n_frames=60)
    write_truth_video(out / "truth", "synth-0002", [0], n_frames=80)
    return out


def _run(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    clips = clips_from_starts("s0", [0, 49, 103, 150, 200], n_frames=250)
    # A filtered shot still counts, and a shot split into two clips counts once.
    clips[3]["status"] = "filtered"
    clips.append({"source_id": "s0", "shot_index": 3, "start_frame": 170, "end_frame": 200})
    # A source that failed before being cut writes a source-level row with shot_index -1.
    clips.append({"source_id": "s9", "shot_index": -1, "start_frame": 0, "end_frame": 0, "status": "failed"})
    # Nor is a source-level row a shot, whatever frames it carries.
    clips.append({"source_id": "s0", "shot_index": -1, "start_frame": 120, "end_frame": 250, "status": "failed"})
    clips += clips_from_starts("s2", [0], n_frames=80)
    clips += clips_from_starts("sx", [0, 10], n_frames=20)
    write_run(run, [("/data/in/synth-0000.mp4", "s0", "ok"), ("file:///data/in/synth-0002.mp4", "s2", "ok"),
                    ("/data/in/holiday.mp4", "sx", "ok"), ("/data/in/broken.mp4", "s9", "failed"),
                    ("/data/zz/synth-0000.mp4", "s0-again", "ok")], clips)
    return run


def test_known_answer(truth: Path, tmp_path: Path) -> None:
    result = evaluate_run(_run(tmp_path), truth)
    shots = result["metrics"]["shots"]
    assert shots["available"]
    v0 = shots["per_video"]["synth-0000"]
    # Truth cuts 50, 100, 150; predicted 49 (hit), 103 (3 off: miss), 150 (hit), 200 (extra).
    assert (v0["tp"], v0["fp"], v0["fn"]) == (2, 2, 1)
    assert v0["pred_boundaries"] == [49, 103, 150, 200] and v0["truth_boundaries"] == [50, 100, 150]
    assert v0["mean_abs_offset"] == pytest.approx(0.5)
    # synth-0001 is not in the run: its one cut is missed.
    v1 = shots["per_video"]["synth-0001"]
    assert v1["missing"] and (v1["tp"], v1["fp"], v1["fn"]) == (0, 0, 1) and v1["f1"] == 0.0
    # synth-0002 has no cuts and none were predicted: perfect.
    v2 = shots["per_video"]["synth-0002"]
    assert (v2["tp"], v2["fp"], v2["fn"], v2["f1"]) == (0, 0, 0, 1.0)
    s = shots["summary"]
    assert (s["tp"], s["fp"], s["fn"]) == (2, 2, 2)
    assert s["precision"] == pytest.approx(0.5) and s["recall"] == pytest.approx(0.5) and s["f1"] == pytest.approx(0.5)
    assert s["missing_videos"] == 1
    assert result["missing_videos"] == ["synth-0001"]
    assert sorted(result["unmatched_sources"]) == ["/data/in/broken.mp4", "/data/in/holiday.mp4"]
    assert result["source_of_video"] == {"synth-0000": "s0", "synth-0002": "s2"}
    assert result["duplicate_sources"] == ["/data/zz/synth-0000.mp4"]


def test_tolerance_setting_changes_the_answer(truth: Path, tmp_path: Path) -> None:
    from voxhear.benchmarks.evaluation import EvalSettings
    result = evaluate_run(_run(tmp_path), truth / "truth", EvalSettings(shot_tolerance_frames=3))
    assert result["metrics"]["shots"]["per_video"]["synth-0000"]["tp"] == 3


def test_truth_at_another_fps_is_moved_onto_the_run_clock(tmp_path: Path) -> None:
    write_truth_video(tmp_path / "truth", "synth-0000", [0, 90, 150], n_frames=300, fps=30.0)
    run = tmp_path / "run"
    write_run(run, [("/x/synth-0000.mp4", "s0", "ok")], clips_from_starts("s0", [0, 75, 125], n_frames=250))
    shots = evaluate_run(run, tmp_path)["metrics"]["shots"]
    assert shots["per_video"]["synth-0000"]["truth_boundaries"] == [75, 125]
    assert shots["summary"]["f1"] == 1.0


def test_missing_clips_manifest_is_not_available(truth: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    write_run(run, [("/x/synth-0000.mp4", "s0", "failed")], clips=None)
    result = evaluate_run(run, truth)
    assert result["metrics"]["shots"] == {"available": False, "reason": "the run has no manifests/clips.parquet"}
    assert "shots: not available" in format_table(result)


def test_cli_writes_eval_json_and_prints_table(truth: Path, tmp_path: Path, capsys) -> None:
    run = _run(tmp_path)
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert run_from_args(parser.parse_args([str(run), "--truth", str(truth)])) == 0
    written = json.loads((run / "eval.json").read_text())
    assert written["metrics"]["shots"]["summary"]["f1"] == pytest.approx(0.5)
    out = capsys.readouterr().out
    assert "synth-0001 (missing)" in out and "all (pooled)" in out and "/data/in/holiday.mp4" in out
    table_total = next(line for line in out.splitlines() if line.startswith("all (pooled)"))
    assert table_total.split()[-4:-1] == ["0.500", "0.500", "0.500"]
    # The figures block: pooled value, interval over videos, worst video.
    f1_line = next(line.split() for line in out.splitlines() if line.strip().startswith("f1 "))
    assert f1_line[1] == "0.500" and f1_line[-2:] == ["synth-0001", "higher"]
    shots = written["metrics"]["shots"]
    assert shots["figures"]["f1"]["worst_video"] == "synth-0001" and shots["figures"]["f1"]["worst"] == 0.0
    assert written["settings"]["bootstrap"] == {"unit": "video", "resamples": 1000, "seed": 0, "level": 0.95}


def test_cli_json_option_bootstrap_and_seed(truth: Path, tmp_path: Path, capsys) -> None:
    run = _run(tmp_path)
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    out = tmp_path / "e.json"
    args = [str(run), "--truth", str(truth), "--json", str(out), "--bootstrap", "200", "--seed", "7"]
    assert run_from_args(parser.parse_args(args)) == 0
    first = json.loads(out.read_text())
    assert first["settings"]["bootstrap"]["resamples"] == 200 and first["settings"]["bootstrap"]["seed"] == 7
    lo, hi = first["metrics"]["shots"]["figures"]["f1"]["interval"]
    assert 0.0 <= lo <= first["metrics"]["shots"]["summary"]["f1"] <= hi <= 1.0
    assert run_from_args(parser.parse_args(args)) == 0
    assert json.loads(out.read_text())["metrics"] == first["metrics"]  # the fixed seed reproduces it
    assert run_from_args(parser.parse_args(args[:-4] + ["--bootstrap", "-1"])) == 2
    assert run_from_args(parser.parse_args(args + ["--der-collars", "x"])) == 2


def test_cli_reports_a_missing_run_clearly(truth: Path, tmp_path: Path, capsys) -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert run_from_args(parser.parse_args([str(tmp_path / "nope"), "--truth", str(truth)])) == 2
    assert "sources.parquet does not exist" in capsys.readouterr().err


def test_the_seams_of_a_cut_long_shot_are_not_scored_as_cuts(truth: Path, tmp_path: Path) -> None:
    """scene_cut.max_shot_s cuts a long shot into pieces; the piece starting at frame 75 is marked
    `seam` and is no predicted cut (it would be a false positive)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    run = tmp_path / "run"
    write_run(run, [("/data/in/synth-0000.mp4", "s0", "ok")], clips_from_starts("s0", [0, 50, 75, 100, 150], 200))
    path = run / "manifests" / "clips.parquet"
    table = pq.read_table(path)
    pq.write_table(table.append_column("seam", pa.array([s == 75 for s in table.column("start_frame").to_pylist()])),
                   path)
    v0 = evaluate_run(run, truth)["metrics"]["shots"]["per_video"]["synth-0000"]
    assert v0["pred_boundaries"] == [50, 100, 150] and (v0["tp"], v0["fp"], v0["fn"]) == (3, 0, 0)
