"""Shot-boundary detection: do the run's cuts fall on the true cuts?

A boundary is the first frame of every shot but the first. Predicted boundaries come from
`manifests/clips.parquet`: every row whatever its status (a filtered shot was still detected),
one per (source_id, shot_index), source-level rows (shot_index < 0) left out, and the earliest
start_frame of a shot taken. True boundaries come from `shots.parquet`, moved onto the run's
frame clock when the truth's fps differs. Each prediction matches at most one truth within
±tolerance frames (`match_within`); counts are summed over videos (micro average). A truth video
the run did not process counts all its cuts as missed; a source with no truth is only listed.
Precision, recall and F1 also get a bootstrap interval over videos and their worst video.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from voxhear.benchmarks.evaluation.base import EvalSettings, MetricResult, not_available
from voxhear.benchmarks.evaluation.bootstrap import HIGHER, attach_figures
from voxhear.benchmarks.evaluation.data import RunView, TruthSet
from voxhear.benchmarks.evaluation.matching import Counts, match_within

COLUMNS = ["n_truth", "n_pred", "tp", "fp", "fn", "precision", "recall", "f1", "mean_abs_offset"]


class ShotBoundaryMetric:
    """Precision, recall and F1 of shot boundaries within a frame tolerance."""

    name = "shots"

    def __init__(self, settings: EvalSettings) -> None:
        self.settings = settings
        self.tolerance = settings.shot_tolerance_frames

    def evaluate(self, run: RunView, truth: TruthSet) -> MetricResult:
        if run.clips is None:
            return not_available(self.name, "the run has no manifests/clips.parquet")
        if not {"source_id", "shot_index", "start_frame"} <= set(run.clips.column_names):
            return not_available(self.name, "clips.parquet lacks source_id, shot_index or start_frame")
        predicted = predicted_boundaries(run)
        total = Counts()
        offsets: list[float] = []
        per_video: dict[str, dict] = {}
        for video in truth.video_ids:
            source = run.source_of_video.get(video)
            run_fps = run.fps_of_source.get(source or "", 25.0)
            truth_cuts = true_boundaries(truth, video, run_fps)
            pred_cuts = predicted.get(source, []) if source is not None else []
            pairs = match_within(pred_cuts, truth_cuts, self.tolerance)
            counts = Counts(tp=len(pairs), fp=len(pred_cuts) - len(pairs), fn=len(truth_cuts) - len(pairs))
            video_offsets = [abs(pred_cuts[i] - truth_cuts[j]) for i, j in pairs]
            offsets += video_offsets
            total = total + counts
            per_video[video] = {"source_id": source, "missing": source is None,
                                "n_truth": len(truth_cuts), "n_pred": len(pred_cuts), **counts.to_json(),
                                "mean_abs_offset": _mean(video_offsets),
                                "truth_boundaries": truth_cuts, "pred_boundaries": pred_cuts}
        summary = {"n_truth": sum(v["n_truth"] for v in per_video.values()),
                   "n_pred": sum(v["n_pred"] for v in per_video.values()), **total.to_json(),
                   "mean_abs_offset": _mean(offsets), "tolerance_frames": self.tolerance,
                   "videos": len(per_video), "missing_videos": sum(v["missing"] for v in per_video.values())}
        result = MetricResult(self.name, True, summary=summary, per_video=per_video, columns=COLUMNS)
        stats = {video: Counts(tp=v["tp"], fp=v["fp"], fn=v["fn"]) for video, v in per_video.items()}
        attach_figures(result, stats, _pool, {k: HIGHER for k in ("precision", "recall", "f1")}, self.settings)
        return result


def predicted_boundaries(run: RunView) -> dict[str, list[int]]:
    """Per source_id, the sorted start frames of its shots after the first."""
    assert run.clips is not None
    starts: dict[tuple[str, int], int] = {}
    # Seams where scene_cut split a long shot (scene_cut.max_shot_s) are not cuts.
    columns = ["source_id", "shot_index", "start_frame", *(["seam"] if "seam" in run.clips.column_names else [])]
    for row in run.clips.select(columns).to_pylist():
        if row["shot_index"] is None or row["shot_index"] < 0 or row["start_frame"] is None or row.get("seam"):
            continue
        key = (str(row["source_id"]), int(row["shot_index"]))
        starts[key] = min(int(row["start_frame"]), starts.get(key, int(row["start_frame"])))
    out: dict[str, list[int]] = defaultdict(list)
    for (source, _), start in starts.items():
        # The first shot's start is the video's start, not a cut; a missing shot 0 does not make
        # shot 1's start any less of a cut, hence "start > 0" rather than "index > 0".
        if start > 0:
            out[source].append(start)
    return {k: sorted(set(v)) for k, v in out.items()}


def true_boundaries(truth: TruthSet, video: str, run_fps: float) -> list[int]:
    """Start frames of the truth's shots after the first, on a `run_fps` frame clock."""
    table = truth.table(video, "shots.parquet")
    fps = float(truth.meta(video)["fps"])
    starts = sorted(int(s) for s in table.column("start_frame").to_pylist() if int(s) > 0)
    if abs(fps - run_fps) < 1e-9:
        return starts
    return sorted({int(np.floor(s / fps * run_fps + 0.5)) for s in starts})


def _pool(parts: list[Counts]) -> dict:
    counts = sum(parts, Counts()).to_json()
    return {k: counts[k] for k in ("precision", "recall", "f1")}


def _mean(values: list[float]) -> float | None:
    return round(float(np.mean(values)), 4) if values else None
