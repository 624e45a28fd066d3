"""Diarization on an audio-only development set (`voxhear synth OUT --audio-only`): DER with
overlap scored, per recording, pooled, with a bootstrap interval over recordings, diarizing the
mix, the separated speech, or both (speech segmented in the mix, voices embedded from the
separated speech), side by side.

The separation and diarization stages run exactly as in a pipeline run (same classes, same
config sections); only ingest is skipped, since the set's audio is already 16 kHz mono.

    python -m voxhear.benchmarks.diarization_dev /tmp/dev-diar --input mix,speech,both [diarization.KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
from pathlib import Path

import soundfile as sf

from voxhear.benchmarks.evaluation.bootstrap import LOWER, video_figures
from voxhear.pipeline.config import load_config
from voxhear.pipeline.models import ModelStore
from voxhear.pipeline.records import SourceRecord
from voxhear.pipeline.stage import RunContext
from voxhear.stages.audio.diarization import read_rttm
from voxhear.stages.audio.stages import DiarizationStage, SeparationStage

# Collar 0 scores every boundary; 0.25 s (NIST's, and the issue's meeting figures') forgives the
# quarter second either side of a reference boundary, where the truth's own VAD is uncertain.
COLLARS = (0.0, 0.25)


def der_parts(reference_rttm: Path, hypothesis_rttm: Path, duration: float, collar: float = 0.0) -> dict[str, float]:
    """Seconds of missed, false-alarm and confused speech and of reference speech (overlap scored)."""
    from pyannote.core import Annotation, Segment
    from pyannote.metrics.diarization import DiarizationErrorRate

    def annotation(path: Path) -> Annotation:
        out = Annotation()
        for i, turn in enumerate(read_rttm(path)):
            out[Segment(turn.start, turn.end), i] = turn.speaker
        return out

    metric = DiarizationErrorRate(collar=collar, skip_overlap=False)
    parts = metric(annotation(reference_rttm), annotation(hypothesis_rttm), uem=Segment(0, duration), detailed=True)
    return {k: float(parts[k]) for k in ("missed detection", "false alarm", "confusion", "total")}


def pool(parts: list[dict[str, float]]) -> dict[str, float | None]:
    total = sum(p["total"] for p in parts)
    if not total:
        return {"der": None, "missed": None, "false_alarm": None, "confusion": None}
    missed = sum(p["missed detection"] for p in parts) / total
    false_alarm = sum(p["false alarm"] for p in parts) / total
    confusion = sum(p["confusion"] for p in parts) / total
    return {
        "der": missed + false_alarm + confusion,
        "missed": missed,
        "false_alarm": false_alarm,
        "confusion": confusion,
    }


def evaluate(set_dir: Path, inputs: list[str], overrides: list[str], work: Path) -> dict[str, dict]:
    config = load_config(None, [f"inputs=[{set_dir}]", *overrides])
    context = RunContext(run_dir=work, model_store=ModelStore.from_config(config.models))
    separation = SeparationStage(config.separation, context)
    # One stage per input ("speech" and "both" read the separated speech the row carries).
    stages = {name: DiarizationStage(dataclasses.replace(config.diarization, input=name), context) for name in inputs}
    scored = [(name, collar) for name in inputs for collar in COLLARS]
    stats: dict[tuple[str, float], dict[str, dict[str, float]]] = {key: {} for key in scored}
    speakers: dict[str, dict[str, tuple[int, int]]] = {name: {} for name in inputs}
    for truth in sorted(p for p in (set_dir / "truth").iterdir() if p.is_dir()):
        audio = set_dir / "audio" / f"{truth.name}.flac"
        duration = sf.info(str(audio)).duration
        reference = truth / "turns.rttm"
        n_reference = len({t.speaker for t in read_rttm(reference)})
        row = SourceRecord(source_uri=str(audio), source_id=truth.name, audio_uri=str(audio))
        if set(inputs) - {"mix"}:
            row = separation.process(row)[0]
        for name in inputs:
            # The row as the separation stage left it (the separator's own speech in
            # `separated_uri`, which diarization reads, and the stems), or for "mix" without it.
            separated = {} if name != "mix" else {"speech_uri": "", "separated_uri": ""}
            diarized = dataclasses.replace(row, source_id=f"{truth.name}-{name}", **separated)
            diarized = stages[name].process(diarized)[0]
            for collar in COLLARS:
                stats[name, collar][truth.name] = der_parts(reference, Path(diarized.rttm_uri), duration, collar)
            speakers[name][truth.name] = (len({t.speaker for t in read_rttm(diarized.rttm_uri)}), n_reference)
    report = {}
    for name, collar in scored:
        pooled, per_video, figures = video_figures(stats[name, collar], pool, {"der": LOWER})
        report[f"{name}, collar {collar}"] = {
            "pooled": pooled,
            "figures": figures,
            "per_recording": {
                v: {**per_video[v], "speakers_found": speakers[name][v][0], "speakers_true": speakers[name][v][1]}
                for v in per_video
            },
        }
    return report


def format_report(report: dict[str, dict]) -> str:
    lines = []
    for name, result in report.items():
        lines.append(f"diarizing the {name} (DER, overlap scored):")
        for video, row in result["per_recording"].items():
            lines.append(
                f"  {video}  der {row['der']:.3f}  missed {row['missed']:.3f}  false alarm "
                f"{row['false_alarm']:.3f}  confusion {row['confusion']:.3f}  speakers "
                f"{row['speakers_found']}/{row['speakers_true']}"
            )
        figure = result["figures"]["der"]
        lo, hi = figure["interval"] or (float("nan"), float("nan"))
        lines.append(
            f"  pooled der {result['pooled']['der']:.3f} [95% {lo:.3f}, {hi:.3f}] (missed "
            f"{result['pooled']['missed']:.3f}, false alarm {result['pooled']['false_alarm']:.3f}, confusion "
            f"{result['pooled']['confusion']:.3f}); worst {figure['worst']:.3f} ({figure['worst_video']})"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m voxhear.benchmarks.diarization_dev",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("set_dir", type=Path, help="output of `voxhear synth OUT --audio-only`")
    parser.add_argument("overrides", nargs="*", help="config overrides such as diarization.threshold=0.7")
    parser.add_argument(
        "--input",
        default="mix,speech",
        help="what is diarized, comma-separated, side by side (diarization.input): mix, speech (the "
        "separated speech) and both (segmented in the mix, embedded from the speech); default mix,speech",
    )
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_intermixed_args(argv)
    inputs = list(dict.fromkeys(name.strip() for name in args.input.split(",") if name.strip()))
    unknown = [name for name in inputs if name not in ("mix", "speech", "both")]
    if unknown or not inputs:
        parser.error(f"--input takes mix, speech and both, comma-separated; got {args.input!r}")
    with tempfile.TemporaryDirectory(prefix="diar-dev-") as work:
        report = evaluate(args.set_dir, inputs, args.overrides, Path(work))
    print(format_report(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=float))


if __name__ == "__main__":
    main()
