"""Face boxes, tracks and identities against the synth truth, and every stage's time per frame.

Predictions are the kept face tracks of `manifests/clips.parquet` (status ok): every frame of a
track carries a box (detected or interpolated), read from the track's `frames_uri` npz. Truth is
`faces.parquet` (one box per frame and visible person). Boxes are moved onto the truth's pixels
and frame clock when the run normalized the video to another size or frame rate.

- Detection: per frame, predictions and truths are matched one-to-one by IoU (Hungarian, pairs
  below IoU 0.5 do not count): precision, recall, F1, and the mean IoU of the matched pairs.
  A truth video the run did not process counts all its boxes as missed.
- Tracks: a track's purity is the share of its frames matched to its most frequent true person
  (frames matched to nobody count against it); reported micro-averaged over frames and as the
  worst track. An identity switch is a true person, within one shot, being matched to a
  different track than at the previous frame it was matched at.
- Identities: each track's true identity is the GRID recording its most frequent person shows
  (the same speaker may appear in several videos); `manifests/identities.parquet` gives its
  predicted identity. Purity is the share of tracks in clusters that agree with their cluster's
  majority; inverse purity (completeness) the share of tracks whose identity is in its most
  common cluster: putting every track in its own cluster scores purity 1 and inverse purity low.

Detection precision, recall, F1, mean IoU and track purity also get a bootstrap interval over
videos and their worst video (identity purity clusters across videos: no per-video interval).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path, PurePosixPath

import numpy as np
import pyarrow.parquet as pq
from scipy.optimize import linear_sum_assignment

from voxhear.benchmarks.evaluation.base import EvalSettings, MetricResult, not_available
from voxhear.benchmarks.evaluation.bootstrap import HIGHER, attach_figures, sum_arrays
from voxhear.benchmarks.evaluation.data import DEFAULT_RUN_FPS, RunView, TruthSet, read_columns
from voxhear.benchmarks.evaluation.matching import Counts

IOU_MATCH = 0.5
CLIP_COLUMNS = ["source_id", "key", "status", "shot_index", "track_index", "frames_uri", "norm_width",
                "norm_height", "norm_fps"]
DETECTION_COLUMNS = ["n_truth", "n_pred", "tp", "fp", "fn", "precision", "recall", "f1", "mean_iou"]
TRACK_COLUMNS = ["n_tracks", "track_purity", "min_track_purity", "id_switches", "n_identities",
                 "n_true_identities", "identity_purity", "identity_inverse_purity"]


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of (N, 4) and (M, 4) x1, y1, x2, y2 boxes."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    a, b = np.asarray(a, np.float64)[:, None], np.asarray(b, np.float64)[None]
    iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = iw * ih
    union = ((a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1]) + (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
             - inter)
    return inter / np.maximum(union, 1e-9)


def match_boxes(pred: np.ndarray, truth: np.ndarray, min_iou: float = IOU_MATCH) -> list[tuple[int, int, float]]:
    """One-to-one (pred, truth, iou) pairs maximizing total IoU, each pair at least `min_iou`."""
    iou = box_iou(pred, truth)
    if iou.size == 0:
        return []
    rows, cols = linear_sum_assignment(-np.where(iou >= min_iou, iou, 0.0))
    return [(int(r), int(c), float(iou[r, c])) for r, c in zip(rows, cols) if iou[r, c] >= min_iou]


def identity_purity(predicted: list[str], true: list[str]) -> tuple[float | None, float | None]:
    """(purity, inverse purity) of a clustering `predicted` against labels `true`."""
    if not predicted:
        return None, None
    n = len(predicted)
    by_cluster: dict[str, Counter] = defaultdict(Counter)
    by_true: dict[str, Counter] = defaultdict(Counter)
    for p, t in zip(predicted, true):
        by_cluster[p][t] += 1
        by_true[t][p] += 1
    purity = sum(c.most_common(1)[0][1] for c in by_cluster.values()) / n
    inverse = sum(c.most_common(1)[0][1] for c in by_true.values()) / n
    return purity, inverse


class FaceMetric:
    """Face detection precision/recall/IoU, track purity and switches, identity purity."""

    name = "faces"

    def __init__(self, settings: EvalSettings) -> None:
        self.settings = settings

    def evaluate(self, run: RunView, truth: TruthSet) -> MetricResult:
        clips_path = run.run_dir / "manifests" / "clips.parquet"
        if run.clips is None or not clips_path.is_file():
            return not_available(self.name, "the run has no manifests/clips.parquet")
        names = set(pq.read_schema(clips_path).names)
        if not {"frames_uri", "track_index"} <= names:
            return not_available(self.name, "clips.parquet has no face tracks (no frames_uri column)")
        # With the talk stage a track is cut into several clips that share its frames file:
        # score each track once, including tracks whose clips only the talk stage's filter rejected.
        tracks: dict[tuple, dict] = {}
        for r in read_columns(clips_path, CLIP_COLUMNS + ["stage"]).to_pylist():
            if r["status"] == "ok" or (r["status"] == "filtered" and r["stage"] == "talk" and r["frames_uri"]):
                tracks.setdefault((r["source_id"], r["shot_index"], r["track_index"]), r)
        clips = list(tracks.values())
        identities = _read_identities(run.run_dir)
        tracks_by_source: dict[str, list[dict]] = defaultdict(list)
        for row in clips:
            tracks_by_source[row["source_id"]].append(row)
        total = Counts()
        ious: list[float] = []
        per_video: dict[str, dict] = {}
        all_tracks: list[dict] = []
        stats: dict[str, np.ndarray] = {}
        for video in truth.video_ids:
            source = run.source_of_video.get(video)
            result = self._video(truth, video, tracks_by_source.get(source, []) if source else [],
                                 run.fps_of_source.get(source or "", DEFAULT_RUN_FPS))
            total = total + result["counts"]
            ious += result["ious"]
            for t in result["tracks"]:
                t["identity_id"] = identities.get(t["key"])
            all_tracks += result["tracks"]
            counts = result["counts"]
            stats[video] = np.array([counts.tp, counts.fp, counts.fn, sum(result["ious"]), len(result["ious"]),
                                     sum(t["majority_frames"] for t in result["tracks"]),
                                     sum(t["frames"] for t in result["tracks"])], dtype=np.float64)
            per_video[video] = {"source_id": source, "missing": source is None,
                                **self._scores(result["counts"], result["ious"], result["tracks"], result["switches"])}
        summary = self._scores(total, ious, all_tracks, sum(v["id_switches"] for v in per_video.values()))
        summary.update({"iou_threshold": IOU_MATCH, "videos": len(per_video),
                        "missing_videos": sum(v["missing"] for v in per_video.values()),
                        "identities_available": bool(identities)})
        result = MetricResult(self.name, True, summary=summary, per_video=per_video,
                              columns=DETECTION_COLUMNS + TRACK_COLUMNS)
        attach_figures(result, stats, _pool, {k: HIGHER for k in FIGURES}, self.settings)
        return result

    def _video(self, truth: TruthSet, video: str, tracks: list[dict], run_fps: float) -> dict:
        meta = truth.meta(video)
        truth_fps = float(meta["fps"])
        faces = truth.table(video, "faces.parquet").to_pylist()
        identity_of = {p: _identity_name(info) for p, info in (meta.get("people") or {}).items()}
        shot_of_frame = {}
        truth_by_frame: dict[int, list[dict]] = defaultdict(list)
        for face in faces:
            truth_by_frame[int(face["frame"])].append(face)
            shot_of_frame[int(face["frame"])] = int(face["shot_index"])
        pred_by_frame: dict[int, list[tuple[int, np.ndarray]]] = defaultdict(list)
        track_infos = []
        for t_index, row in enumerate(tracks):
            data = np.load(row["frames_uri"])
            sx = float(meta["width"]) / float(row["norm_width"] or meta["width"])
            sy = float(meta["height"]) / float(row["norm_height"] or meta["height"])
            fps = float(row["norm_fps"] or run_fps)
            for frame, box in zip(data["frame"], data["box"]):
                truth_frame = int(frame) if abs(fps - truth_fps) < 1e-9 else int(np.floor(frame / fps * truth_fps + 0.5))
                pred_by_frame[truth_frame].append((t_index, np.asarray(box, np.float64) * [sx, sy, sx, sy]))
            track_infos.append({"key": row["key"], "frames": len(data["frame"]), "matched": Counter()})
        counts = Counts()
        ious: list[float] = []
        last_track: dict[tuple[str, int], int] = {}
        switches = 0
        for frame in sorted(set(truth_by_frame) | set(pred_by_frame)):
            truths = truth_by_frame.get(frame, [])
            preds = pred_by_frame.get(frame, [])
            t_boxes = np.array([[f["x1"], f["y1"], f["x2"], f["y2"]] for f in truths]).reshape(-1, 4)
            p_boxes = np.array([b for _, b in preds]).reshape(-1, 4)
            pairs = match_boxes(p_boxes, t_boxes)
            counts = counts + Counts(tp=len(pairs), fp=len(preds) - len(pairs), fn=len(truths) - len(pairs))
            for p, t, iou in pairs:
                ious.append(iou)
                track = preds[p][0]
                person = truths[t]["person_id"]
                track_infos[track]["matched"][person] += 1
                slot = (person, shot_of_frame.get(frame, -1))
                if slot in last_track and last_track[slot] != track:
                    switches += 1
                last_track[slot] = track
        for info in track_infos:
            best = info["matched"].most_common(1)
            info["majority_frames"] = best[0][1] if best else 0
            info["true_identity"] = identity_of.get(best[0][0], best[0][0]) if best else None
        return {"counts": counts, "ious": ious, "tracks": track_infos, "switches": switches}

    @staticmethod
    def _scores(counts: Counts, ious: list[float], tracks: list[dict], switches: int) -> dict:
        frames = sum(t["frames"] for t in tracks)
        purities = [t["majority_frames"] / t["frames"] for t in tracks if t["frames"]]
        labelled = [t for t in tracks if t["true_identity"] is not None and t.get("identity_id")]
        purity, inverse = identity_purity([t["identity_id"] for t in labelled], [t["true_identity"] for t in labelled])
        return {
            **counts.to_json(), "n_truth": counts.tp + counts.fn, "n_pred": counts.tp + counts.fp,
            "mean_iou": round(float(np.mean(ious)), 6) if ious else None,
            "n_tracks": len(tracks),
            "track_purity": round(sum(t["majority_frames"] for t in tracks) / frames, 6) if frames else None,
            "min_track_purity": round(min(purities), 6) if purities else None,
            "id_switches": switches,
            "n_identities": len({t["identity_id"] for t in labelled}),
            "n_true_identities": len({t["true_identity"] for t in labelled}),
            "identity_purity": round(purity, 6) if purity is not None else None,
            "identity_inverse_purity": round(inverse, 6) if inverse is not None else None,
        }


FIGURES = ("precision", "recall", "f1", "mean_iou", "track_purity")


def _pool(parts: list[np.ndarray]) -> dict:
    """Detection and track figures of summed (tp, fp, fn, IoU sum, pairs, majority frames, frames)."""
    tp, fp, fn, iou_sum, pairs, majority, frames = sum_arrays(parts, 7)
    counts = Counts(tp=int(tp), fp=int(fp), fn=int(fn)).to_json()
    return {"precision": counts["precision"], "recall": counts["recall"], "f1": counts["f1"],
            "mean_iou": round(float(iou_sum / pairs), 6) if pairs else None,
            "track_purity": round(float(majority / frames), 6) if frames else None}


class StageTimeMetric:
    """Milliseconds of wall and CPU time per video frame for every stage (from sources.parquet)."""

    name = "stage_time"

    def __init__(self, settings: EvalSettings) -> None:
        self.settings = settings

    def evaluate(self, run: RunView, truth: TruthSet) -> MetricResult:
        path = run.run_dir / "manifests" / "sources.parquet"
        table = read_columns(path, ["source_id", "status", "n_frames", "wall_s", "cpu_s"])
        if not {"n_frames", "wall_s", "cpu_s"} <= set(table.column_names):
            return not_available(self.name, "sources.parquet has no per-stage times")
        rows = {r["source_id"]: r for r in table.to_pylist()}
        stages: list[str] = []
        per_video: dict[str, dict] = {}
        wall_total: Counter = Counter()
        cpu_total: Counter = Counter()
        frames_total = 0
        for video in truth.video_ids:
            source = run.source_of_video.get(video)
            row = rows.get(source) if source else None
            if not row or not row["n_frames"]:
                per_video[video] = {"source_id": source, "missing": True}
                continue
            wall, cpu = dict(row["wall_s"] or {}), dict(row["cpu_s"] or {})
            for stage in list(wall) + list(cpu):
                if stage not in stages:
                    stages.append(stage)
            frames = int(row["n_frames"])
            frames_total += frames
            wall_total.update(wall)
            cpu_total.update(cpu)
            entry = {"source_id": source, "missing": False, "frames": frames}
            for stage in stages:
                entry[f"{stage}_ms"] = round(1000 * wall.get(stage, 0.0) / frames, 3)
                entry[f"{stage}_cpu_ms"] = round(1000 * cpu.get(stage, 0.0) / frames, 3)
            per_video[video] = entry
        if not frames_total:
            return not_available(self.name, "no truth video was processed")
        summary: dict = {"frames": frames_total}
        for stage in stages:
            summary[f"{stage}_ms"] = round(1000 * wall_total[stage] / frames_total, 3)
            summary[f"{stage}_cpu_ms"] = round(1000 * cpu_total[stage] / frames_total, 3)
        columns = ["frames"] + [f"{s}_{kind}" for s in stages for kind in ("ms", "cpu_ms")]
        return MetricResult(self.name, True, summary=summary, per_video=per_video, columns=columns)


def _identity_name(info: dict) -> str:
    """A person's recording (``faces-grid/bbaf2n.mpg`` -> ``bbaf2n``): the same speaker across videos."""
    source = str(info.get("source") or "")
    return PurePosixPath(source).stem or source


def _read_identities(run_dir: Path) -> dict[str, str]:
    path = Path(run_dir) / "manifests" / "identities.parquet"
    if not path.is_file():
        return {}
    table = pq.read_table(path, columns=["key", "identity_id"])
    return dict(zip(table.column("key").to_pylist(), table.column("identity_id").to_pylist()))
