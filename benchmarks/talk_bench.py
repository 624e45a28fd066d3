"""Rerun only the talk stage on the face tracks of a finished run, then score it.

    python -m voxhear.benchmarks.talk_bench RUN TRUTH OUT [talk.KEY=VALUE ...]

RUN is a finished `voxhear run` (its face tracks, separated speech and diarized turns are
reused), TRUTH the `voxhear synth` folder, OUT a new folder that receives
manifests/{clips,sources}.parquet, the clips' files under work/, and eval.json. Prints the
talk/listen, attribution and self/other summaries. Lets a talk-stage change be checked without
re-running the six stages before it (minutes instead of a quarter of an hour here).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
from pathlib import Path

import pyarrow.parquet as pq

from voxhear.pipeline.config import load_config
from voxhear.pipeline.models import ModelStore
from voxhear.pipeline.records import STATUS_FAILED, STATUS_FILTERED, ClipRecord, FaceTrackRecord
from voxhear.pipeline.stage import FilteredError, InputError, RunContext

SUMMARIES = {
    "talk_listen": ["ok_clips", "ok_talk_f1", "ok_listen_f1", "ok_silence_f1", "ok_both_f1", "ok_macro_f1"],
    "attribution": ["ok_clips", "ok_attribution", "ok_missed_share", "ok_swapped_share", "ok_partial_share"],
    "self_other": ["ok_self_si_sdr_mean", "ok_self_si_sdr_median", "ok_self_si_sdr_total",
                   "ok_other_si_sdr_mean", "ok_other_si_sdr_median", "ok_other_si_sdr_total", "mix_max_abs_error"],
}


def tracks_of_run(run_dir: Path) -> tuple[list[FaceTrackRecord], list[dict]]:
    """The face tracks that reached the talk stage (one each), and the rows that never did."""
    tracks: dict[str, FaceTrackRecord] = {}
    earlier = []
    for row in pq.read_table(run_dir / "manifests" / "clips.parquet").to_pylist():
        if row.get("stage") not in ("", "talk") or not row.get("frames_uri"):
            earlier.append(row)
            continue
        if row["frames_uri"] not in tracks:
            track = FaceTrackRecord.from_row(row)
            tracks[row["frames_uri"]] = dataclasses.replace(
                track, status="ok", stage="", reason="", error_type="", error_message="")
    return [tracks[k] for k in sorted(tracks)], earlier


def bench(run_dir: Path, truth_dir: Path, out: Path, overrides: list[str]) -> dict:
    from voxhear.benchmarks.evaluation.cli import evaluate_run
    from voxhear.stages.talk.stage import TalkStage

    config = load_config(run_dir / "config.yaml", overrides)
    if out.exists():
        shutil.rmtree(out)
    (out / "manifests").mkdir(parents=True)
    stage = TalkStage(config.talk, RunContext(out, ModelStore.from_config(config.models)))
    stage.setup()
    tracks, earlier = tracks_of_run(run_dir)
    clips: list[ClipRecord] = []
    for track in tracks:
        try:
            clips += stage.process(track)
        except (FilteredError, InputError) as error:
            clip = ClipRecord.from_parent(track)
            status = STATUS_FILTERED if isinstance(error, FilteredError) else STATUS_FAILED
            clip.mark(status, stage.name, error.reason, type(error).__name__, str(error))
            clips.append(clip)
    records = [ClipRecord.from_row(row) for row in earlier] + clips
    pq.write_table(ClipRecord.to_table(records), out / "manifests" / "clips.parquet")
    shutil.copy(run_dir / "manifests" / "sources.parquet", out / "manifests" / "sources.parquet")
    result = evaluate_run(out, truth_dir)
    (out / "eval.json").write_text(json.dumps(result, indent=1))
    metrics = result["metrics"]
    return {name: {k: metrics[name]["summary"].get(k) for k in keys}
            for name, keys in SUMMARIES.items() if metrics.get(name, {}).get("available", True) and
            "summary" in metrics.get(name, {})}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m voxhear.benchmarks.talk_bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("truth", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("overrides", nargs="*", help="config overrides such as talk.asd_threshold=1.5")
    args = parser.parse_args(argv)
    print(json.dumps(bench(args.run, args.truth, args.out, list(args.overrides)), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
