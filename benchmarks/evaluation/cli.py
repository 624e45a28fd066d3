"""`voxhear eval RUN --truth DIR`: score a pipeline run against synth ground truth."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pyarrow.parquet as pq

from voxhear.benchmarks.evaluation.base import EvalSettings
from voxhear.benchmarks.evaluation.data import RunView, TruthSet
from voxhear.benchmarks.evaluation.registry import build_metrics
from voxhear.benchmarks.evaluation.report import format_table
from voxhear.pipeline.io import atomic_write_text

# 2: figures (per-video, pooled, bootstrap interval, worst video); DER at collar 0 and 0.25.
EVAL_VERSION = 2


def evaluate_run(run_dir: Path, truth_dir: Path, settings: EvalSettings | None = None) -> dict:
    """Run every registered metric on `run_dir` against `truth_dir`.

    Args:
        run_dir: A pipeline run (reads manifests/sources.parquet and, per metric, more).
        truth_dir: A `voxhear synth` output folder or its truth/ folder.
        settings: Metric settings; defaults when None.

    Returns:
        The evaluation as JSON-ready dict (what eval.json holds).
    """
    settings = settings or EvalSettings()
    truth = TruthSet.open(Path(truth_dir))
    run = RunView.open(Path(run_dir), truth)
    _require_work_files(Path(run_dir))
    metrics = {m.name: m.evaluate(run, truth).to_json() for m in build_metrics(settings)}
    return {
        "eval_version": EVAL_VERSION,
        "run_dir": str(run_dir),
        "truth_dir": str(truth.truth_dir),
        "settings": settings.to_json(),
        "videos": truth.video_ids,
        "source_of_video": run.source_of_video,
        "missing_videos": [v for v in truth.video_ids if v not in run.source_of_video],
        "unmatched_sources": run.unmatched_sources,
        "duplicate_sources": run.duplicate_sources,
        "metrics": metrics,
    }


def _require_work_files(run_dir: Path) -> None:
    """The metrics score clips from their work files, which a run deletes once an input is
    committed unless `keep_work` is set: say so rather than scoring a run with nothing in it."""
    clips = Path(run_dir) / "manifests" / "clips.parquet"
    if not clips.is_file() or "clip_frames_uri" not in pq.read_schema(clips).names:
        return
    uris = [u for u in pq.read_table(clips, columns=["clip_frames_uri"]).column(0).to_pylist() if u]
    if uris and not any(Path(u).is_file() for u in uris):
        raise FileNotFoundError(
            f"none of the {len(uris)} clip frame files of {run_dir} exists (e.g. {uris[0]}): the run removed its "
            "work area after committing (keep_work=false). Rerun with `voxhear run --keep-work` to evaluate it."
        )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the options of `voxhear eval` on `parser`."""
    parser.add_argument("run", help="pipeline run folder (with manifests/)")
    parser.add_argument("--truth", required=True, help="`voxhear synth` output folder, or its truth/ folder")
    parser.add_argument("--shot-tolerance", type=int, default=EvalSettings().shot_tolerance_frames,
                        help="frames a predicted cut may be off a true one (default 2)")
    defaults = EvalSettings()
    parser.add_argument("--der-collars", default=",".join(f"{c:g}" for c in defaults.der_collars),
                        help="DER collars in seconds, comma-separated; the first is the headline `der` "
                             "(default 0,0.25)")
    parser.add_argument("--bootstrap", type=int, default=defaults.bootstrap_resamples,
                        help="resamples of the videos for the intervals (default 1000; 0: none)")
    parser.add_argument("--seed", type=int, default=defaults.bootstrap_seed,
                        help="seed of the bootstrap resampling (default 0)")
    parser.add_argument("--speech-reference", choices=("stems", "dry"), default=defaults.speech_reference,
                        help="truth the separated speech and the self/other tracks are scored against: each "
                             "person's speech as mixed (stems, default) or before the room (dry)")
    parser.add_argument("--out", "--json", dest="out", default=None,
                        help="where to write the JSON (default RUN/eval.json)")


def run_from_args(args: argparse.Namespace) -> int:
    """Evaluate, write RUN/eval.json (or --out) and print the table; returns the exit code."""
    if args.shot_tolerance < 0:
        print("voxhear eval: --shot-tolerance must be >= 0", file=sys.stderr)
        return 2
    if args.bootstrap < 0:
        print("voxhear eval: --bootstrap must be >= 0", file=sys.stderr)
        return 2
    try:
        collars = tuple(float(c) for c in str(args.der_collars).split(",") if c.strip())
    except ValueError:
        collars = ()
    if not collars or any(c < 0 for c in collars):
        print("voxhear eval: --der-collars must be one or more seconds >= 0, comma-separated", file=sys.stderr)
        return 2
    try:
        result = evaluate_run(Path(args.run), Path(args.truth),
                              EvalSettings(shot_tolerance_frames=args.shot_tolerance, der_collars=collars,
                                           bootstrap_resamples=args.bootstrap, bootstrap_seed=args.seed,
                                           speech_reference=args.speech_reference))
    except FileNotFoundError as err:
        print(f"voxhear eval: {err}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else Path(args.run) / "eval.json"
    atomic_write_text(out, json.dumps(result, indent=2) + "\n")
    print(format_table(result), end="")
    print(f"wrote {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="voxhear eval", description=__doc__)
    add_arguments(parser)
    return run_from_args(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
