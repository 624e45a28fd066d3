"""The face metric on hand-made truth and runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from voxhear.benchmarks.evaluation.base import EvalSettings
from voxhear.benchmarks.evaluation.data import RunView, TruthSet
from voxhear.benchmarks.evaluation.faces import FaceMetric, box_iou, identity_purity
from voxhear.benchmarks.synth.truth import FACES_SCHEMA

A_BOX, B_BOX = [100.0, 100.0, 200.0, 230.0], [400.0, 90.0, 500.0, 220.0]


def write_truth(root: Path, video: str, people: dict[str, str], boxes: dict[str, list[float]], frames: int) -> None:
    """A truth folder: every person in `boxes` visible on every frame of one shot."""
    folder = root / "truth" / video
    folder.mkdir(parents=True)
    rows = [{"frame": f, "person_id": p, "shot_index": 0, "x1": b[0], "y1": b[1], "x2": b[2], "y2": b[3],
             "source_frame": f} for f in range(frames) for p, b in boxes.items()]
    pq.write_table(pa.Table.from_pylist(rows, schema=FACES_SCHEMA), folder / "faces.parquet")
    meta = {"video_id": video, "fps": 25.0, "width": 640, "height": 360, "n_frames": frames,
            "people": {p: {"source": f"faces-grid/{name}.mpg"} for p, name in people.items()}}
    (folder / "meta.json").write_text(json.dumps(meta))


def write_run(root: Path, tracks: list[dict], identities: dict[str, str] | None = None) -> Path:
    """A run whose face tracks are `tracks` ({video, key, frames, boxes}) with npz frame files."""
    run = root / "run"
    (run / "manifests").mkdir(parents=True)
    videos = sorted({t["video"] for t in tracks})
    pq.write_table(pa.Table.from_pylist([{"source_uri": f"/in/{v}.mp4", "source_id": f"src-{v}", "status": "ok",
                                          "norm_fps": 25.0} for v in videos]), run / "manifests" / "sources.parquet")
    rows = []
    for i, t in enumerate(tracks):
        path = run / f"{t['key']}.npz"
        np.savez(path, frame=np.asarray(t["frames"], np.int32), box=np.asarray(t["boxes"], np.float32))
        rows.append({"source_id": f"src-{t['video']}", "key": t["key"], "status": t.get("status", "ok"),
                     "shot_index": 0, "start_frame": 0, "end_frame": 100, "start_s": 0.0, "end_s": 4.0,
                     "track_index": i, "frames_uri": str(path), "norm_width": 640, "norm_height": 360,
                     "norm_fps": 25.0})
    pq.write_table(pa.Table.from_pylist(rows), run / "manifests" / "clips.parquet")
    if identities is not None:
        pq.write_table(pa.Table.from_pylist([{"key": k, "identity_id": v} for k, v in identities.items()]),
                       run / "manifests" / "identities.parquet")
    return run


def evaluate(root: Path, run: Path) -> dict:
    truth = TruthSet.open(root)
    result = FaceMetric(EvalSettings()).evaluate(RunView.open(run, truth), truth)
    assert result.available
    return result.summary


def test_perfect_tracks_score_one(tmp_path):
    write_truth(tmp_path, "v1", {"A": "aa", "B": "bb"}, {"A": A_BOX, "B": B_BOX}, 10)
    run = write_run(tmp_path, [{"video": "v1", "key": "ka", "frames": range(10), "boxes": [A_BOX] * 10},
                               {"video": "v1", "key": "kb", "frames": range(10), "boxes": [B_BOX] * 10}],
                    {"ka": "i1", "kb": "i2"})
    s = evaluate(tmp_path, run)
    assert (s["tp"], s["fp"], s["fn"]) == (20, 0, 0)
    assert s["recall"] == 1.0 and s["mean_iou"] == pytest.approx(1.0)
    assert s["track_purity"] == 1.0 and s["id_switches"] == 0
    assert s["identity_purity"] == 1.0 and s["identity_inverse_purity"] == 1.0


def test_iou_misses_and_false_boxes(tmp_path):
    write_truth(tmp_path, "v1", {"A": "aa"}, {"A": [0.0, 0.0, 100.0, 100.0]}, 10)
    shifted = [10.0, 0.0, 110.0, 100.0]  # IoU 90/110
    far = [300.0, 300.0, 340.0, 340.0]  # nobody there
    run = write_run(tmp_path, [{"video": "v1", "key": "k1", "frames": range(6), "boxes": [shifted] * 6},
                               {"video": "v1", "key": "k2", "frames": range(4), "boxes": [far] * 4}])
    s = evaluate(tmp_path, run)
    assert (s["tp"], s["fp"], s["fn"]) == (6, 4, 4)
    assert s["mean_iou"] == pytest.approx(90 / 110, abs=1e-6)
    assert s["precision"] == pytest.approx(0.6) and s["recall"] == pytest.approx(0.6)
    # The far track matched nobody: its frames count against purity.
    assert s["track_purity"] == pytest.approx(6 / 10) and s["min_track_purity"] == 0.0


def test_a_track_that_jumps_between_people(tmp_path):
    write_truth(tmp_path, "v1", {"A": "aa", "B": "bb"}, {"A": A_BOX, "B": B_BOX}, 10)
    jumper = [A_BOX] * 5 + [B_BOX] * 5
    rest = [B_BOX] * 5 + [A_BOX] * 5
    run = write_run(tmp_path, [{"video": "v1", "key": "k1", "frames": range(10), "boxes": jumper},
                               {"video": "v1", "key": "k2", "frames": range(10), "boxes": rest}])
    s = evaluate(tmp_path, run)
    assert s["recall"] == 1.0
    assert s["track_purity"] == pytest.approx(0.5)
    assert s["id_switches"] == 2  # A moves from k1 to k2 at frame 5, B from k2 to k1


def test_identity_purity_across_videos(tmp_path):
    # The same recording "aa" is in both videos; "bb" and "cc" once each.
    write_truth(tmp_path, "v1", {"A": "aa", "B": "bb"}, {"A": A_BOX, "B": B_BOX}, 5)
    write_truth(tmp_path, "v2", {"A": "cc", "B": "aa"}, {"A": A_BOX, "B": B_BOX}, 5)
    tracks = [{"video": v, "key": f"{v}-{p}", "frames": range(5), "boxes": [box] * 5}
              for v in ("v1", "v2") for p, box in (("A", A_BOX), ("B", B_BOX))]
    # aa in v1 and v2 merged (right), but bb and cc merged too (wrong).
    run = write_run(tmp_path, tracks, {"v1-A": "x", "v2-B": "x", "v1-B": "y", "v2-A": "y"})
    s = evaluate(tmp_path, run)
    assert s["n_true_identities"] == 3 and s["n_identities"] == 2
    assert s["identity_purity"] == pytest.approx(3 / 4)
    assert s["identity_inverse_purity"] == 1.0


def test_a_video_the_run_lacks_counts_as_missed(tmp_path):
    write_truth(tmp_path, "v1", {"A": "aa"}, {"A": A_BOX}, 4)
    write_truth(tmp_path, "v2", {"A": "bb"}, {"A": B_BOX}, 6)
    run = write_run(tmp_path, [{"video": "v1", "key": "k1", "frames": range(4), "boxes": [A_BOX] * 4}])
    s = evaluate(tmp_path, run)
    assert (s["tp"], s["fn"], s["missing_videos"]) == (4, 6, 1)
    assert s["recall"] == pytest.approx(0.4)


def test_purity_and_iou_helpers():
    assert identity_purity(["a", "b", "c"], ["x", "x", "x"]) == (1.0, pytest.approx(1 / 3))
    assert box_iou(np.array([[0, 0, 10, 10]]), np.array([[5, 0, 15, 10]]))[0, 0] == pytest.approx(1 / 3)


def test_not_available_without_face_tracks(tmp_path):
    write_truth(tmp_path, "v1", {"A": "aa"}, {"A": A_BOX}, 3)
    run = tmp_path / "run"
    (run / "manifests").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist([{"source_uri": "/in/v1.mp4", "source_id": "s", "status": "ok"}]),
                   run / "manifests" / "sources.parquet")
    pq.write_table(pa.Table.from_pylist([{"source_id": "s", "key": "k", "status": "ok", "shot_index": 0,
                                          "start_frame": 0}]), run / "manifests" / "clips.parquet")
    truth = TruthSet.open(tmp_path)
    result = FaceMetric(EvalSettings()).evaluate(RunView.open(run, truth), truth)
    assert not result.available
