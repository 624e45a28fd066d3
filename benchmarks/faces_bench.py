"""Rerun only the face stage on the shots of a finished run, then score it: the tuning harness.

    python -m voxhear.benchmarks.faces_bench RUN TRUTH OUT [--workers N] [faces.KEY=VALUE ...]

RUN is a finished `voxhear run` (its shot segments are reused), TRUTH the `voxhear synth`
folder, OUT a new folder that receives manifests/{clips,sources,identities}.parquet, eval.json and
timing.json. Prints the face metric, the stage's milliseconds per frame by step (wall and CPU;
CPU includes the ffmpeg encoder) and its throughput: elapsed time over all frames with N worker
processes side by side (`--workers`, models loaded before the clock starts). Lets settings be
compared without re-running ingest, scene cut and the audio stages.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from collections import defaultdict
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from voxhear.pipeline.config import RunConfig, load_config
from voxhear.pipeline.models import ModelStore
from voxhear.pipeline.records import STATUS_FILTERED, FaceTrackRecord, ShotRecord, sample_key
from voxhear.pipeline.stage import FilteredError, RunContext

SUMMARY_KEYS = ["recall", "precision", "mean_iou", "track_purity", "min_track_purity", "id_switches", "n_tracks",
                "identity_purity", "identity_inverse_purity", "n_identities", "n_true_identities"]


def shots_of_run(run_dir: Path) -> list[ShotRecord]:
    """One ShotRecord per shot of `run_dir` whose segment video still exists."""
    shots: dict[tuple[str, int], ShotRecord] = {}
    for row in pq.read_table(run_dir / "manifests" / "clips.parquet").to_pylist():
        where = (row["source_id"], row["shot_index"])
        if where in shots or not row.get("segment_video_uri") or not Path(row["segment_video_uri"]).exists():
            continue
        parent = FaceTrackRecord.from_row(row)
        shots[where] = ShotRecord.from_parent(parent, status="ok", stage="", reason="", error_type="",
                                              error_message="", wall_s={}, cpu_s={},
                                              key=sample_key(parent.source_id, round(parent.start_s * 1000)))
    return [shots[k] for k in sorted(shots)]


_WORKER: dict = {}


def _init_worker(config: RunConfig, out: Path) -> None:
    from voxhear.stages.faces.stage import FaceStage

    stage = FaceStage(config.faces, RunContext(out, ModelStore.from_config(config.models)))
    stage.setup()
    _WORKER["stage"] = stage


def _run_shot(shot: ShotRecord) -> tuple[list[FaceTrackRecord], float, float]:
    """The stage's rows for one shot, with the wall and CPU seconds it took."""
    stage = _WORKER["stage"]
    wall0, t0 = time.perf_counter(), os.times()
    try:
        produced = stage.process(shot)
    except FilteredError as error:
        produced = [FaceTrackRecord.from_parent(shot)]
        produced[0].mark(STATUS_FILTERED, stage.name, error.reason, "", str(error))
    t1 = os.times()
    return produced, time.perf_counter() - wall0, sum(t1[:4]) - sum(t0[:4])


def bench(run_dir: Path, truth_dir: Path, out: Path, config: RunConfig, workers: int = 1) -> dict:
    """Run the face stage on every shot of `run_dir` with `workers` processes; score and time it."""
    from voxhear.benchmarks.evaluation.cli import evaluate_run
    from voxhear.passes.identities import assign_identities

    if out.exists():
        shutil.rmtree(out)
    (out / "manifests").mkdir(parents=True)
    shots = shots_of_run(run_dir)
    if workers == 1:
        _init_worker(config, out)
        started = time.perf_counter()
        results = [_run_shot(shot) for shot in shots]
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                                 initargs=(config, out)) as pool:
            # Start the clock once every worker has loaded its models.
            list(pool.map(time.sleep, [0.5] * workers))
            started = time.perf_counter()
            results = list(pool.map(_run_shot, shots))
    elapsed = time.perf_counter() - started
    rows: list[FaceTrackRecord] = []
    spent: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    steps_wall: dict[str, float] = defaultdict(float)
    steps_cpu: dict[str, float] = defaultdict(float)
    frames = 0
    for shot, (produced, wall, cpu) in zip(shots, results):
        spent[shot.source_id][0] += wall
        spent[shot.source_id][1] += cpu
        n = shot.end_frame - shot.start_frame
        frames += n
        if produced[0].ms_per_frame:
            for k, v in produced[0].ms_per_frame.items():
                steps_wall[k] += v * n
            for k, v in produced[0].cpu_ms_per_frame.items():
                steps_cpu[k] += v * n
        rows += produced
    timing = {"frames": frames, "workers": workers, "elapsed_s": round(elapsed, 2),
              "throughput_ms_per_frame": round(1000 * elapsed / max(frames, 1), 2),
              "wall_ms_per_frame": {k: round(v / frames, 2) for k, v in steps_wall.items()},
              "cpu_ms_per_frame": {k: round(v / frames, 2) for k, v in steps_cpu.items()}}
    (out / "timing.json").write_text(json.dumps(timing, indent=1))
    pq.write_table(FaceTrackRecord.to_table(rows), out / "manifests" / "clips.parquet")
    original = pq.read_table(run_dir / "manifests" / "sources.parquet")
    sources = original.to_pylist()
    for source in sources:
        wall, cpu = spent.get(source["source_id"], (0.0, 0.0))
        source["wall_s"], source["cpu_s"] = {"faces": wall}, {"faces": cpu}
    pq.write_table(pa.Table.from_pylist(sources, schema=original.schema), out / "manifests" / "sources.parquet")
    assign_identities(out, config.faces.identity_threshold)
    result = evaluate_run(out, truth_dir)
    (out / "eval.json").write_text(json.dumps(result, indent=1))
    reasons: dict[str, int] = defaultdict(int)
    for row in rows:
        reasons[f"{row.status}/{row.reason}" if row.reason else row.status] += 1
    summary = result["metrics"]["faces"]["summary"]
    return {"faces": {k: summary.get(k) for k in SUMMARY_KEYS}, "rows": dict(reasons), **timing}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m voxhear.benchmarks.faces_bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("truth", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("overrides", nargs="*", help="config overrides such as faces.detect_every=3")
    parser.add_argument("--workers", type=int, default=1, help="face stage processes in parallel")
    args = parser.parse_args(argv)
    config = load_config(None, list(args.overrides))
    print(json.dumps(bench(args.run, args.truth, args.out, config, args.workers), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
