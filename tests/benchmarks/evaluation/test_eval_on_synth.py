"""`voxhear eval` reads real `voxhear synth` output: a run that finds the true cuts scores 1."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from tests.conftest import needs_shared
from voxhear.benchmarks.evaluation import evaluate_run
from voxhear.benchmarks.synth import SynthOptions, compose_dataset
from voxhear.benchmarks.synth.options import default_media_dir

from .eval_helpers import clips_from_starts, write_run

MEDIA = default_media_dir()


@needs_shared(MEDIA / "faces-grid", "the shared GRID face clips")
def test_perfect_and_shifted_runs_on_synth_truth(tmp_path: Path) -> None:
    out = tmp_path / "synth"
    compose_dataset(SynthOptions(out_dir=out, media_dir=MEDIA, videos=2, duration_s=6.0, width=192,
                                 height=108, shots=3, min_shot_s=1.0, seed=5))
    perfect, shifted = tmp_path / "perfect", tmp_path / "shifted"
    sources, clips_ok, clips_off = [], [], []
    for i, video in enumerate(["synth-0000", "synth-0001"]):
        shots = pq.read_table(out / "truth" / video / "shots.parquet").to_pylist()
        starts = [s["start_frame"] for s in shots]
        n = shots[-1]["end_frame"]
        sources.append((str(out / "videos" / f"{video}.mp4"), f"src{i}", "ok"))
        clips_ok += clips_from_starts(f"src{i}", starts, n)
        clips_off += clips_from_starts(f"src{i}", [starts[0]] + [s + 3 for s in starts[1:]], n)
    write_run(perfect, sources, clips_ok)
    write_run(shifted, sources, clips_off)
    good = evaluate_run(perfect, out)["metrics"]["shots"]["summary"]
    assert good["n_truth"] == 4 and (good["tp"], good["fp"], good["fn"]) == (4, 0, 0) and good["f1"] == 1.0
    bad = evaluate_run(shifted, out)["metrics"]["shots"]["summary"]
    assert (bad["tp"], bad["fp"], bad["fn"]) == (0, 4, 4) and bad["f1"] == 0.0
