"""Rerun only the talk stage on the face tracks of a finished run, then score it.

    python -m voxhear.benchmarks.talk_bench RUN TRUTH OUT [talk.KEY=VALUE ...]

RUN is a finished `voxhear run` (its face tracks, separated speech and diarized turns are
reused), TRUTH the `voxhear synth` folder, OUT a new folder that receives
manifests/{clips,sources}.parquet, the clips' files under work/, and eval.json. Prints the
talk/listen, attribution and self/other summaries. Lets a talk-stage change be checked without
re-running the six stages before it (minutes instead of a quarter of an hour here).

`diarization.KEY=VALUE` overrides that differ from the run's config diarize each source again
from the run's audio (mix and separated speech) first, into OUT/work/SOURCE/turns.rttm, so that
a diarization change is scored through the talk stage too (and by the eval's DER):

    python -m voxhear.benchmarks.talk_bench RUN TRUTH OUT diarization.input=mix diarization.threshold=0.8

Runs made before the diarization stage looked for overlap in the mix (`diarization.mix_overlap`)
get the mix's overlap regions found here, into OUT/work/SOURCE/overlap.rttm.

`--rediarize` diarizes again with the run's own diarization config (to score a change in the
diarization code on an older run).

`--truth-turns` replaces every source's diarized turns by the truth's (TRUTH/VIDEO/turns.rttm):
what the talk stage reaches with a perfect diarization, i.e. how much of the error is the turns'.
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
from voxhear.pipeline.records import STATUS_FAILED, STATUS_FILTERED, ClipRecord, FaceTrackRecord, SourceRecord
from voxhear.pipeline.stage import FilteredError, InputError, RunContext

SUMMARIES = {
    "talk_listen": ["ok_clips", "ok_talk_f1", "ok_listen_f1", "ok_silence_f1", "ok_both_f1", "ok_macro_f1"],
    "talk_listen_all_clips": ["talk_f1", "listen_f1", "silence_f1", "both_f1", "macro_f1"],
    "attribution": ["attribution", "ok_clips", "ok_attribution", "ok_missed_share", "ok_swapped_share", "ok_partial_share"],
    "self_other": ["self_si_sdr_total", "other_si_sdr_total", "ok_self_si_sdr_mean", "ok_self_si_sdr_median", "ok_self_si_sdr_total",
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


def rediarize(run_dir: Path, out: Path, config) -> dict[str, str]:
    """Diarize every source of `run_dir` again with `config.diarization` (turns into `out`'s work
    area) and write `out`'s sources.parquet with them; old turns file -> new one."""
    from voxhear.stages.audio.diarization import rttm_text
    from voxhear.stages.audio.stages import DiarizationStage

    context = RunContext(out, ModelStore.from_config(config.models))
    stage = DiarizationStage(config.diarization, context)
    renamed, rows = {}, []
    for source in pq.read_table(run_dir / "manifests" / "sources.parquet").to_pylist():
        row = SourceRecord.from_row(source)
        if row.rttm_uri:
            try:
                new = stage.process(dataclasses.replace(row))[0]
            except FilteredError:  # no speech found now: an empty turns file, the talk stage decides
                # source_work_dir creates the folder.
                new = dataclasses.replace(row, rttm_uri=str(context.source_work_dir(row.source_id) / "turns.rttm"))
                Path(new.rttm_uri).write_text(rttm_text(row.source_id, []))
            renamed[row.rttm_uri] = new.rttm_uri
            row = new
        rows.append(row)
    pq.write_table(SourceRecord.to_table(rows), out / "manifests" / "sources.parquet")
    return renamed


def hear_overlap(out: Path, config) -> dict[str, str]:
    """Overlap regions of the mix, as the diarization stage finds them with
    `diarization.mix_overlap`, for the sources of `out`'s sources.parquet that have none, into
    `out`'s work area: so runs made before the stage looked for them can be scored with it.
    Source id -> file."""
    from voxhear.stages.audio.stages import DiarizationStage

    stage = DiarizationStage(config.diarization, RunContext(out, ModelStore.from_config(config.models)))
    found: dict[str, str] = {}
    for source in pq.read_table(out / "manifests" / "sources.parquet").to_pylist():
        row = SourceRecord.from_row(source)
        if not row.overlap_uri and row.rttm_uri and row.audio_uri:
            stage.hear_overlap(row)
        # Every source's regions, found now or by the diarization: a rediarized source has new ones.
        if row.overlap_uri:
            found[row.source_id] = row.overlap_uri
    return found


def truth_turns(run_dir: Path, out: Path, truth_dir: Path) -> dict[str, str]:
    """Give every source of `run_dir` the truth's turns (into `out`'s work area) and write `out`'s
    sources.parquet with them; old turns file -> new one."""
    renamed, rows = {}, []
    for source in pq.read_table(run_dir / "manifests" / "sources.parquet").to_pylist():
        row = SourceRecord.from_row(source)
        if row.rttm_uri:
            target = out / "work" / row.source_id / "turns.rttm"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(truth_dir / Path(row.source_uri).stem / "turns.rttm", target)
            renamed[row.rttm_uri] = str(target)
            row = dataclasses.replace(row, rttm_uri=str(target))
        rows.append(row)
    pq.write_table(SourceRecord.to_table(rows), out / "manifests" / "sources.parquet")
    return renamed


def bench(
    run_dir: Path,
    truth_dir: Path,
    out: Path,
    overrides: list[str],
    use_truth_turns: bool = False,
    force_rediarize: bool = False,
) -> dict:
    from voxhear.benchmarks.evaluation.cli import evaluate_run
    from voxhear.stages.talk.stage import TalkStage

    config = load_config(run_dir / "config.yaml", overrides)
    if out.exists():
        shutil.rmtree(out)
    (out / "manifests").mkdir(parents=True)
    renamed = {}
    if use_truth_turns:
        renamed = truth_turns(run_dir, out, truth_dir)
    elif force_rediarize or config.diarization != load_config(run_dir / "config.yaml").diarization:
        renamed = rediarize(run_dir, out, config)
    else:
        shutil.copy(run_dir / "manifests" / "sources.parquet", out / "manifests" / "sources.parquet")
    stage = TalkStage(config.talk, RunContext(out, ModelStore.from_config(config.models)))
    stage.setup()
    tracks, earlier = tracks_of_run(run_dir)
    tracks = [dataclasses.replace(t, rttm_uri=renamed.get(t.rttm_uri, t.rttm_uri)) for t in tracks]
    if config.diarization.mix_overlap:
        heard = hear_overlap(out, config)
        tracks = [dataclasses.replace(t, overlap_uri=heard.get(t.source_id, t.overlap_uri)) for t in tracks]
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
    result = evaluate_run(out, truth_dir)
    (out / "eval.json").write_text(json.dumps(result, indent=1))
    metrics = result["metrics"]
    summaries = {}
    for name, keys in SUMMARIES.items():
        section = metrics.get(name.removesuffix("_all_clips"), {})
        if section.get("available", True) and "summary" in section:
            summaries[name] = {k: section["summary"].get(k) for k in keys}
    diarization = metrics.get("diarization", {})
    if "summary" in diarization:
        summaries["diarization"] = {k: diarization["summary"].get(k) for k in ("der", "der_c0.25", "missed_overlap")}
    return summaries


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m voxhear.benchmarks.talk_bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("truth", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("overrides", nargs="*", help="config overrides such as talk.asd_threshold=1.5")
    parser.add_argument("--truth-turns", action="store_true", help="use the truth's speaker turns (oracle diarization)")
    parser.add_argument(
        "--rediarize", action="store_true", help="diarize again even with the run's diarization config (new code)"
    )
    args = parser.parse_args(argv)
    if args.truth_turns and args.rediarize:
        parser.error("--truth-turns replaces the turns; --rediarize would diarize for nothing")
    summary = bench(args.run, args.truth, args.out, list(args.overrides), args.truth_turns, args.rediarize)
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
