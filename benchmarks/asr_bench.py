"""Rerun only the ASR stage on the sources of a finished run, then score its words.

    python -m voxhear.benchmarks.asr_bench RUN TRUTH OUT [asr.KEY=VALUE ...]

RUN is a finished `voxhear run` (its separated speech and diarized turns are reused), TRUTH the
`voxhear synth` folder, OUT a new folder (emptied first; never the run) that receives
manifests/sources.parquet, the words under work/, and asr.json: word error rate (the eval's `asr`
metric: pooled, interval over videos, worst video) and the stage's CPU seconds per second of
audio. Lets an ASR setting (`asr.piece_s`, `asr.beam_size`, ...) be weighed for accuracy and cost
without the other stages. Sources go to the stage `asr.rows_per_call` at a time, as the Ray runner
hands them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
from pathlib import Path

import pyarrow.parquet as pq

from voxhear.pipeline.config import load_config
from voxhear.pipeline.models import ModelStore
from voxhear.pipeline.records import STATUS_OK, SourceRecord
from voxhear.pipeline.stage import RunContext


def _cpu_s() -> float:
    times = os.times()
    return times.user + times.system


def bench(run_dir: Path, truth_dir: Path, out: Path, overrides: list[str]) -> dict:
    from voxhear.benchmarks.evaluation.audio import WordErrorMetric
    from voxhear.benchmarks.evaluation.base import EvalSettings
    from voxhear.benchmarks.evaluation.data import RunView, TruthSet
    from voxhear.stages.audio.asr import SpeechFile
    from voxhear.stages.audio.stages import AsrStage

    run, target = run_dir.resolve(), out.resolve()
    if target == run or target in run.parents:
        raise SystemExit(f"OUT ({out}) must not be the run or a folder holding it: OUT is emptied first")
    config = load_config(run_dir / "config.yaml", overrides)
    if out.exists():
        shutil.rmtree(out)
    (out / "manifests").mkdir(parents=True)
    stage = AsrStage(config.asr, RunContext(out, ModelStore.from_config(config.models)))
    stage.setup()
    rows = [
        SourceRecord.from_row(source) for source in pq.read_table(run_dir / "manifests" / "sources.parquet").to_pylist()
    ]
    # Sources the run transcribed, `asr.rows_per_call` of them per call as on the Ray runner.
    todo = [i for i, row in enumerate(rows) if row.status == STATUS_OK and row.words_uri and row.rttm_uri]
    cpu_s, audio_s = 0.0, 0.0
    for first in range(0, len(todo), stage.batch_size):
        batch = todo[first : first + stage.batch_size]
        started = _cpu_s()
        outputs = stage.process_batch([dataclasses.replace(rows[i]) for i in batch])
        cpu_s += _cpu_s() - started
        for i, [row] in zip(batch, outputs):
            rows[i] = row
            audio_s += SpeechFile(row.separator_speech_uri or row.audio_uri).duration
    pq.write_table(SourceRecord.to_table(rows), out / "manifests" / "sources.parquet")
    truth = TruthSet.open(truth_dir)
    result = WordErrorMetric(EvalSettings()).evaluate(RunView.open(out, truth), truth).to_json()
    figures = result.get("figures", {}).get("wer", {})
    summary = {
        "settings": overrides,
        "wer": figures.get("pooled", result["summary"].get("wer")),
        "interval": figures.get("interval"),
        "worst": figures.get("worst"),
        "ref_words": result["summary"]["ref_words"],
        "cpu_s_per_audio_s": round(cpu_s / audio_s, 4) if audio_s else None,
    }
    (out / "asr.json").write_text(json.dumps({"summary": summary, "metric": result}, indent=1))
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m voxhear.benchmarks.asr_bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("run", type=Path)
    parser.add_argument("truth", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("overrides", nargs="*", help="config overrides such as asr.piece_s=15")
    args = parser.parse_args(argv)
    print(json.dumps(bench(args.run, args.truth, args.out, list(args.overrides))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
