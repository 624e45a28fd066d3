"""The whole pipeline on one composed conversation: clips land in the shards in the documented format."""

from __future__ import annotations

import io
import json
import tarfile

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from tests.conftest import require_shared
from tests.stages.faces.conftest import model_store  # noqa: F401 - the shared store fixture
from voxhear.pipeline.registry import stage_names
from voxhear.benchmarks.evaluation.cli import evaluate_run
from voxhear.dataset.loader import VoxHearWindows, collate_windows
from voxhear.pipeline.records import STATE_NAMES
from voxhear.pipeline.runner import run_pipeline
from voxhear.benchmarks.synth import SynthOptions, compose_dataset
from voxhear.benchmarks.synth.options import default_media_dir

MEDIA = default_media_dir()
MEMBERS = ["mp4", "mix.flac", "self.flac", "other.flac", "background.flac", "frames.npz", "words.json", "json"]


def _samples(shards_dir):
    samples: dict[str, dict[str, bytes]] = {}
    for shard in sorted(shards_dir.glob("*.tar")):
        with tarfile.open(shard) as tar:
            for member in tar.getmembers():
                key, ext = member.name.split(".", 1)
                samples.setdefault(key, {})[ext] = tar.extractfile(member).read()
    return samples


@pytest.mark.slow
def test_clips_in_the_shard_format_with_exact_mix_consistency(tmp_path, run_config, model_store):
    require_shared(MEDIA / "faces-grid", "the shared GRID face clips")
    synth = tmp_path / "synth"
    compose_dataset(SynthOptions(out_dir=synth, media_dir=MEDIA, videos=1, duration_s=12.0, width=480, height=270,
                                 shots=2, min_shot_s=4.0, two_shot_prob=0.0, seed=7))
    stages = "stages=[" + ", ".join(stage_names()) + "]"
    # keep_work: the evaluation scores clips from their work files.
    config = run_config([str(synth / "videos")], stages, f"models.dir={model_store.store_dir}", "keep_work=true")
    summary = run_pipeline(config, show_progress=False)
    clips = pq.read_table(summary.run_dir / "manifests" / "clips.parquet").to_pylist()
    assert all(c["status"] in ("ok", "filtered") for c in clips), [c["error_message"] for c in clips]
    kept = [c for c in clips if c["status"] == "ok"]
    assert kept, [(c["reason"], c["error_message"]) for c in clips]
    for c in clips:
        if c["status"] == "filtered":
            assert c["stage"] and c["reason"] and c["error_message"]
    samples = _samples(summary.run_dir / "shards")
    assert set(samples) == {c["key"] for c in kept}
    splits = {r["key"]: r for r in pq.read_table(summary.run_dir / "manifests" / "splits.parquet").to_pylist()}
    # Identity and split are the manifests' (shard format 2), and the sample index gives them the loader.
    index = {r["key"]: r for r in pq.read_table(summary.run_dir / "manifests" / "samples.parquet").to_pylist()}
    for clip in kept:
        sample = samples[clip["key"]]
        assert list(sample) == MEMBERS and "." not in clip["key"]
        frames = clip["clip_end_frame"] - clip["clip_start_frame"]
        arrays = np.load(io.BytesIO(sample["frames.npz"]))
        assert list(arrays["state_names"]) == list(STATE_NAMES)
        for name, shape in (("state", (frames,)), ("asd", (frames,)), ("landmarks", (frames, 478, 3)),
                            ("blendshapes", (frames, 52)), ("pose", (frames, 6)), ("frame", (frames,))):
            assert arrays[name].shape == shape, name
        assert arrays["frame"][0] == clip["clip_start_frame"]
        tracks = {}
        for name in ("mix", "self", "other", "background"):
            data, rate = sf.read(io.BytesIO(sample[f"{name}.flac"]), dtype="int32")
            assert rate == 16000 and len(data) == frames * 640
            tracks[name] = data.astype(np.int64)
        # The contract: self + other + background == mix, sample for sample.
        assert np.array_equal(tracks["self"] + tracks["other"] + tracks["background"], tracks["mix"])
        meta = json.loads(sample["json"])
        assert meta["key"] == clip["key"] and meta["shard_format"] == 2 and "split" not in meta
        assert clip["split"] in ("train", "val", "test") and clip["identity_id"].startswith("face-")
        assert (index[clip["key"]]["split"], index[clip["key"]]["identity_id"]) == (clip["split"], clip["identity_id"])
        assert splits[clip["key"]]["identity_id"] == clip["identity_id"]
        assert meta["models"] and meta["config_hash"]
        # voxhear synth writes a licence sidecar beside each video; the samples carry it.
        sidecar = json.loads((synth / "videos" / "synth-0000.json").read_text())
        assert meta["provenance"]["licence"] == sidecar["licence"] and "CC-BY" in sidecar["licence"]
        words = json.loads(sample["words.json"])
        assert all(w["party"] in ("self", "other") and 0 <= w["start_s"] <= w["end_s"] for w in words)
        assert sample["mp4"][4:8] == b"ftyp"
    # Speech really is split: somewhere the on-screen person talks, somewhere they listen.
    assert sum(c["talk_s"] for c in kept) > 0 and sum(c["listen_s"] for c in kept) > 0
    # The researchers' loader turns the same shards into training batches.
    windows = VoxHearWindows(str(summary.run_dir / "shards" / "*.tar"), window_frames=25, drop_partial=True)
    batch = collate_windows(list(windows)[:4])
    assert batch["audio"]["self"].shape[1] == 25 * 640 and batch["blendshapes"].shape[1:] == (25, 52)
    metrics = evaluate_run(summary.run_dir, synth)["metrics"]
    assert metrics["talk_listen"]["summary"]["macro_f1"] > 0.5
    assert metrics["self_other"]["summary"]["mix_max_abs_error"] == 0
