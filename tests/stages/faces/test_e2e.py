"""The whole pipeline on one small composed video: face-track samples land in the shards."""

from __future__ import annotations

import io
import json
import tarfile

import numpy as np
import pyarrow.parquet as pq
import pytest

from tests.conftest import require_shared
from voxhear.benchmarks.evaluation.cli import evaluate_run
from voxhear.pipeline.runner import run_pipeline
from voxhear.benchmarks.synth import SynthOptions, compose_dataset
from voxhear.benchmarks.synth.options import default_media_dir

MEDIA = default_media_dir()


@pytest.mark.slow
def test_face_tracks_land_in_the_shards(tmp_path, run_config, model_store):
    require_shared(MEDIA / "faces-grid", "the shared GRID face clips")
    synth = tmp_path / "synth"
    compose_dataset(SynthOptions(out_dir=synth, media_dir=MEDIA, videos=1, duration_s=4.0, width=480, height=270,
                                 shots=2, min_shot_s=1.5, two_shot_prob=0.0, seed=5))
    # The audio stages are left out: they do not change what this checks, and cost most of the time.
    config = run_config([str(synth / "videos")], "stages=[ingest, scene_cut, shot_media, faces]",
                        f"models.dir={model_store.store_dir}", "keep_work=true")  # evaluated from its work files
    summary = run_pipeline(config, show_progress=False)
    clips = pq.read_table(summary.run_dir / "manifests" / "clips.parquet").to_pylist()
    kept = [c for c in clips if c["status"] == "ok"]
    assert len(kept) >= 2 and all(c["track_index"] >= 0 for c in kept)
    identities = pq.read_table(summary.run_dir / "manifests" / "identities.parquet").to_pylist()
    assert {r["key"] for r in identities} == {c["key"] for c in kept}
    members: dict[str, dict[str, bytes]] = {}
    for shard in sorted((summary.run_dir / "shards").glob("*.tar")):
        with tarfile.open(shard) as tar:
            for member in tar.getmembers():
                key, ext = member.name.split(".", 1)
                members.setdefault(key, {})[ext] = tar.extractfile(member).read()
    assert set(members) == {c["key"] for c in kept}
    for clip in kept:
        sample = members[clip["key"]]
        assert list(sample) == ["mp4", "flac", "frames.npz", "json"]
        meta = json.loads(sample["json"])
        assert meta["key"] == clip["key"] and len(meta["embedding"]) == 128
        arrays = np.load(io.BytesIO(sample["frames.npz"]))
        frames = clip["track_end_frame"] - clip["track_start_frame"]
        assert arrays["landmarks"].shape == (frames, 478, 3)
        assert sample["mp4"][4:8] == b"ftyp" and sample["flac"][:4] == b"fLaC"
    faces = evaluate_run(summary.run_dir, synth)["metrics"]["faces"]["summary"]
    assert faces["recall"] > 0.9 and faces["track_purity"] > 0.99
