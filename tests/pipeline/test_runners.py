"""The Ray runner (local and on a simulated two-node cluster) and the in-process runner agree."""

import dataclasses
import json
from typing import Any

import pyarrow.parquet as pq
import pytest
import ray
import webdataset as wds

from tests.conftest import SHOT_STAGES
from voxhear.pipeline.runner import run_pipeline

VOLATILE = {"wall_s", "cpu_s", "peak_mb", "total_wall_s", "total_cpu_s", "commit", "shard"}


def comparable(run_dir):
    """Manifests with timings, commit numbers, shard names and the run path taken out."""
    tables = {}
    for name in ("sources", "clips"):
        rows = pq.read_table(run_dir / "manifests" / f"{name}.parquet").to_pylist()
        tables[name] = [json.loads(json.dumps({k: v for k, v in row.items() if k not in VOLATILE})
                                   .replace(str(run_dir), "RUN")) for row in rows]
    return tables


@pytest.fixture(scope="module")
def inputs(good_videos, tmp_path_factory):
    broken = tmp_path_factory.mktemp("broken") / "broken.mp4"
    broken.write_text("not a video")
    return [str(p) for p in good_videos] + [str(broken)]


@pytest.fixture(scope="module")
def local_run(inputs, tmp_path_factory):
    from voxhear.pipeline.config import load_config

    run_dir = tmp_path_factory.mktemp("local") / "run"
    listed = "[" + ",".join(inputs) + "]"
    run_pipeline(load_config(None, [f"inputs={listed}", f"run_dir={run_dir}", "runner=local", SHOT_STAGES]),
                 show_progress=False)
    return run_dir


@pytest.mark.slow
def test_ray_and_local_runners_write_identical_manifests(inputs, local_run, run_config, monkeypatch):
    from tests.manifests.test_resume import shard_contents
    from voxhear.pipeline.records import ShotRecord

    def read_on_the_driver(self):
        raise AssertionError("the driver read a sample's media: the shard writer must do it on a worker")

    # Ray's workers are other processes, which this patch does not reach: the run works only if
    # no sample's media is read (hence written into a shard) by the driver.
    monkeypatch.setattr(ShotRecord, "shard_members", read_on_the_driver)
    config = run_config(inputs, runner="ray")
    try:
        summary = run_pipeline(config, show_progress=False)
    finally:
        ray.shutdown()
    monkeypatch.undo()
    assert comparable(summary.run_dir) == comparable(local_run)
    # The samples themselves, byte for byte (the json names its run's paths: the keys' members).
    ray_digests, ray_keys = shard_contents(summary.run_dir)
    local_digests, local_keys = shard_contents(local_run)
    assert sorted(ray_keys) == sorted(local_keys)
    assert {k: v for k, v in ray_digests.items() if not k.endswith(".json")} == {
        k: v for k, v in local_digests.items() if not k.endswith(".json")
    }
    sources = comparable(local_run)["sources"]
    assert sorted(s["status"] for s in sources) == ["failed", "ok", "ok"]


@pytest.mark.slow
def test_two_node_ray_cluster(inputs, local_run, run_config):
    from ray.cluster_utils import Cluster

    ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    try:
        cluster.wait_for_nodes()
        config = run_config(inputs, f"ray.address={cluster.address}", runner="ray")
        summary = run_pipeline(config, show_progress=False)
        assert len([n for n in ray.nodes() if n["Alive"]]) == 2
    finally:
        ray.shutdown()
        cluster.shutdown()
    assert comparable(summary.run_dir) == comparable(local_run)


def test_shards_read_with_webdataset(local_run):
    clips = pq.read_table(local_run / "manifests" / "clips.parquet").to_pylist()
    kept = {c["key"]: c for c in clips if c["status"] == "ok"}
    shards = sorted(str(p) for p in (local_run / "shards").glob("*.tar"))
    samples = list(wds.WebDataset(shards, shardshuffle=False, empty_check=False))
    assert {s["__key__"] for s in samples} == set(kept)
    for sample in samples:
        meta = json.loads(sample["json"])
        assert meta["key"] == sample["__key__"]
        assert sample["mp4"][4:8] == b"ftyp" and sample["flac"][:4] == b"fLaC"
        assert meta["end_frame"] == kept[meta["key"]]["end_frame"]


@pytest.mark.slow
def test_shards_read_with_ray_data(local_run):
    clips = pq.read_table(local_run / "manifests" / "clips.parquet").to_pylist()
    kept = {c["key"] for c in clips if c["status"] == "ok"}
    ray.init(num_cpus=2, include_dashboard=False)
    try:
        rows = ray.data.read_webdataset(str(local_run / "shards"), decoder=None).take_all()
    finally:
        ray.shutdown()
    assert {r["__key__"] for r in rows} == kept
    assert all(isinstance(r["mp4"], bytes) and len(r["mp4"]) > 1000 for r in rows)


@dataclasses.dataclass
class RequestingStage:
    """What the request fitting reads of a stage."""

    name: str
    uses_models: bool
    resources: Any


def test_cpu_requests_fit_every_standing_actor():
    """Five model stages on two CPUs: scaled so one actor each plus a task fit (a hang otherwise)."""
    from voxhear.pipeline.executors import fit_cpu_requests
    from voxhear.pipeline.stage import Resources

    stages = [RequestingStage("ingest", False, Resources(cpus=1.0))] + \
             [RequestingStage(f"model{i}", True, Resources(cpus=1.0)) for i in range(5)]
    cpus = fit_cpu_requests(stages, 2.0)
    assert sum(cpus[s.name] for s in stages) <= 2.0
    assert cpus["model0"] == pytest.approx(1 / 3, abs=1e-3) and cpus["ingest"] == cpus["model0"]
    assert fit_cpu_requests(stages, 16.0) == {s.name: 1.0 for s in stages}


def test_memory_requests_are_declared_and_fit_a_small_machine():
    """Each model stage declares its memory (memory_gb, from the bench's measured peaks); where the
    standing actors would not fit the cluster's memory every request is scaled like the CPUs."""
    from voxhear.pipeline.config import load_config
    from voxhear.pipeline.executors import fit_memory_requests
    from voxhear.pipeline.registry import stage_class
    from voxhear.pipeline.stage import Resources

    config = load_config(None, ["inputs=[a.mp4]"])
    declared = {name: stage_class(name).resources_for(config.section(name)).memory_gb for name in config.stages}
    assert all(declared[name] >= 1.0 for name in ("separation", "diarization", "asr", "faces", "talk"))

    stages = [RequestingStage("ingest", False, Resources(memory_gb=0.5))] + \
             [RequestingStage(f"model{i}", True, Resources(memory_gb=2.0)) for i in range(4)]
    gib = 2**30
    assert fit_memory_requests(stages, 64 * gib) == {s.name: int(s.resources.memory_gb * gib) for s in stages}
    small = fit_memory_requests(stages, 4 * gib)
    assert sum(small[s.name] for s in stages) <= 4 * gib and small["model0"] == 4 * small["ingest"]


def test_an_autoscaling_cluster_that_starts_small_keeps_its_cpu_requests():
    """A head of 0 CPUs whose workers are still starting (or 2 CPUs of an eventual 64): requests are
    fit to what the cluster can grow to (ray.max_cluster_cpus), not scaled down for good at start."""
    from voxhear.pipeline.config import load_config
    from voxhear.pipeline.executors import cluster_cpus

    assert cluster_cpus(2.0, 64) == 64.0
    assert cluster_cpus(96.0, 64) == 96.0  # more than declared: what is there
    assert cluster_cpus(0.0, None) == 1.0  # never a factor of 0 (a warning says what to set)
    assert cluster_cpus(8.0, None) == 8.0
    assert load_config(None, ["inputs=[a.mp4]", "ray.max_cluster_cpus=64"]).ray.max_cluster_cpus == 64


def test_clip_hours_count_each_clip_window_once():
    from voxhear.pipeline.runner import clip_span

    track = {"start_s": 0.0, "end_s": 240.0, "track_index": 0, "track_start_s": 10.0, "track_end_s": 230.0}
    windows = [{**track, "clip_index": i, "clip_start_s": 10.0 + 22 * i, "clip_end_s": 32.0 + 22 * i} for i in range(10)]
    assert sum(b - a for a, b in map(clip_span, windows)) == 220.0  # not 10 x the track's 220 s
    assert clip_span({**track, "clip_index": -1, "clip_start_s": 0.0, "clip_end_s": 0.0}) == (10.0, 230.0)
    assert clip_span({"start_s": 1.0, "end_s": 5.0, "track_index": -1}) == (1.0, 5.0)


@pytest.mark.slow
def test_the_ray_shard_writer_passes_errors_on_and_is_gone_once_closed(tmp_path):
    """The writer actor: an OSError where it writes reaches the driver as that OSError (the CLI's
    one line), its shards come back hashed, and after close() it is dead (no late upload)."""
    import hashlib

    from voxhear.pipeline.config import RayConfig
    from voxhear.pipeline.executors import RayExecutor
    from voxhear.pipeline.records import ShotRecord
    from voxhear.pipeline.shards import ShardWriter, commit_written
    from voxhear.pipeline.stage import SystemFault

    (tmp_path / "v.mp4").write_bytes(b"video")
    (tmp_path / "a.flac").write_bytes(b"audio")
    row = ShotRecord(source_uri="v", key="k0", segment_video_uri=str(tmp_path / "v.mp4"),
                     segment_audio_uri=str(tmp_path / "a.flac"))
    (tmp_path / "not-a-folder").write_text("")
    executor = RayExecutor(RayConfig(num_cpus=2), show_progress=False)
    try:
        broken = executor.shard_writer(ShardWriter(tmp_path / "not-a-folder" / "shards", 10, 10**9))
        with pytest.raises(OSError):
            broken.add_samples([row])
        writer = executor.shard_writer(ShardWriter(tmp_path / "shards", 1, 10**9))
        names, closed = writer.add_samples([row])
        assert names == ["000000.tar"] and closed
        [written] = writer.take_closed()
        commit_written(tmp_path / "shards", [written])
        data = (tmp_path / "shards" / "000000.tar").read_bytes()
        assert (written.sha256, written.bytes) == (hashlib.sha256(data).hexdigest(), len(data))
        writer.close()
        with pytest.raises(SystemFault, match="died"):
            writer.take_closed()
    finally:
        ray.shutdown()
