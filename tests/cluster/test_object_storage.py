"""A run directory on object storage (`run_dir: s3://bucket/run`), against a real S3-compatible
server (moto in server mode, conftest.py).

The stages are the reliability suite's stand-ins (tests/reliability/fakes.py): what is tested here
is where the dataset goes and how a kill is survived, not what the stages compute; the sink,
ledger, end-of-run passes (identities, splits) and the publishing to the bucket are the real ones.
A run killed before each of its writes to the bucket, then resumed (from the same staging copy,
or from an empty one as on another machine), publishes exactly the samples and manifests of an
uninterrupted local run. The Ray runner on a two-node cluster with an S3 run dir is in
test_join_cluster.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from tests.dataset.test_loader import shards, window_ids  # noqa: F401 (a fixture)
from tests.reliability.fakes import TALK, synthetic_video, use_synthetic_stages
from tests.reliability.harness import KILLED, assert_same_samples, run_forked
from voxhear.dataset.loader import VoxHearWindows, run_shards, split_spans, tar_samples
from voxhear.manifests.verify import verify_run
from voxhear.pipeline import remote_run
from voxhear.pipeline.cli import main
from voxhear.pipeline.config import load_config
from voxhear.pipeline.remote_run import RemoteRunDir, RemoteRunLock
from voxhear.pipeline.runlock import RunLockedError
from voxhear.pipeline.runner import run_pipeline

SETTINGS = ["runner=local", "shards.max_samples=2", TALK]


@pytest.fixture(autouse=True)
def synthetic(monkeypatch):
    use_synthetic_stages(monkeypatch)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """Three people (so that train, val and test each get one) and a broken file (a failed row)."""
    folder = tmp_path_factory.mktemp("inputs")
    for name, identity, shots in (("a", 0, 3), ("c", 1, 2), ("d", 2, 2)):
        synthetic_video(folder / f"{name}.mp4", shots=shots, identity=identity)
    (folder / "b_broken.mp4").write_text("not a video")
    return folder


def run(inputs: Path, run_dir: str | Path, staging: Path | None = None):
    settings = [f"inputs=[{inputs}]", f"run_dir={run_dir}", *SETTINGS]
    if staging is not None:
        settings.append(f"staging_dir={staging}")
    return run_pipeline(load_config(None, settings), show_progress=False)


@pytest.fixture(scope="module")
def reference(inputs, tmp_path_factory) -> Path:
    """An uninterrupted run on a local disk."""
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    with pytest.MonkeyPatch.context() as patch:
        use_synthetic_stages(patch)
        summary = run(inputs, run_dir)
    assert summary.status_counts == {"ok": 3, "failed": 1}
    return run_dir


def published(url: str, where: Path) -> Path:
    """A fresh local copy of what the bucket holds."""
    RemoteRunDir(url, where).pull()
    return where


def remote_steps(take) -> None:
    """Count every write to the bucket as a step (harness.run_forked kills before the chosen one):
    the shard writer's uploads and the driver's pushes."""
    put, copy, remove = RemoteRunDir._put, RemoteRunDir._copy, RemoteRunDir._remove
    put_new_shard = remote_run.put_new_shard

    def _put_new_shard(fs, remote_path, local_path):
        take(f"put shards/{remote_path.rsplit('/', 1)[-1]} (by the writer)")
        return put_new_shard(fs, remote_path, local_path)

    remote_run.put_new_shard = _put_new_shard

    def _put(self, relative, remote_relative):
        take(f"put {remote_relative}")
        return put(self, relative, remote_relative)

    def _copy(self, source, target):
        take(f"copy {source} -> {target}")
        return copy(self, source, target)

    def _remove(self, relatives):
        if relatives:
            take(f"remove {' '.join(relatives)}")
        return remove(self, relatives)

    RemoteRunDir._put, RemoteRunDir._copy, RemoteRunDir._remove = _put, _copy, _remove


def test_a_run_on_s3_publishes_what_a_local_run_writes(s3_server, inputs, reference, tmp_path):
    url = f"s3://{s3_server.new_bucket()}/runs/first"
    summary = run(inputs, url, tmp_path / "staging")
    assert summary.status_counts == {"ok": 3, "failed": 1}
    text = summary.format()
    assert f"run directory: {url} (staged in {tmp_path / 'staging'})" in text and f"shards: {url}/shards" in text
    fs = s3_server.filesystem()
    root = url.removeprefix("s3://")
    assert not fs.exists(f"{root}/.lock")  # released
    assert not any("/work/" in path or path.endswith(".tmp") for path in fs.find(root))
    assert_same_samples(published(url, tmp_path / "pulled"), reference)
    # `voxhear pull` gives the same local copy, which `voxhear verify` checks.
    assert main(["pull", url, str(tmp_path / "by-cli")]) == 0
    assert main(["verify", str(tmp_path / "by-cli")]) == 0
    # Commands that read local files name the URL and say how to copy it.
    assert main(["verify", url]) == 2
    # The staging copy is the bucket's: a second run has nothing to do and publishes nothing new.
    again = run(inputs, url, tmp_path / "staging")
    assert again.skipped == 4
    assert_same_samples(published(url, tmp_path / "pulled-again"), reference)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_run_on_s3_killed_before_any_write_to_the_bucket_resumes_to_the_reference(
    s3_server, inputs, reference, tmp_path
):
    url = f"s3://{s3_server.new_bucket()}/run"
    code, steps = run_forked(lambda: run(inputs, url, tmp_path / "uninterrupted"), [], hooks=remote_steps)
    assert code == 0
    # Shards before the ledger parts that list them, each uploaded once and by the writer (not by
    # the push); the commit record last in each commit; no shard is ever rewritten (the splits
    # pass records its assignment in the ledger alone).
    first_part = next(i for i, s in enumerate(steps) if "_ledger" in s)
    assert steps[0].startswith("put shards/") and first_part > 0
    shard_puts = [s for s in steps if s.startswith("put shards/")]
    assert shard_puts and all(s.endswith("(by the writer)") for s in shard_puts)
    assert len(set(shard_puts)) == len(shard_puts)
    assert not any(s.startswith("copy ") for s in steps)
    sources_parts = [i for i, s in enumerate(steps) if s.endswith("-sources.parquet")]
    for i in sources_parts:
        seq = steps[i].rsplit("/", 1)[1][:6]
        assert all(not s.endswith(f"/{seq}-clips.parquet") for s in steps[i + 1 :])
    for k in range(len(steps)):
        bucket = f"s3://{s3_server.new_bucket()}/run"
        staging = tmp_path / f"staging-{k}"
        code, done = run_forked(lambda b=bucket, s=staging: run(inputs, b, s), [], kill_at=k, hooks=remote_steps)
        assert code == KILLED and len(done) == k, (k, done)
        # Every other resume starts from an empty staging copy, as another machine would.
        resume_from = staging if k % 2 == 0 else tmp_path / f"elsewhere-{k}"
        code, _ = run_forked(lambda b=bucket, s=resume_from: run(inputs, b, s), [])
        assert code == 0, f"resume after a kill before step {k} ({steps[k]}) failed"
        assert_same_samples(published(bucket, tmp_path / f"pulled-{k}"), reference)


def test_the_loader_reads_only_the_shards_of_the_split_it_asks_for(s3_server, inputs, tmp_path):
    url = f"s3://{s3_server.new_bucket()}/run"
    run(inputs, url, tmp_path / "staging")
    clips = pq.read_table(tmp_path / "staging" / "manifests" / "clips.parquet").to_pylist()
    kept = [c for c in clips if c["status"] == "ok"]
    every_shard = {f"{url}/shards/{c['shard']}" for c in kept}
    for split in ("train", "val", "test"):
        want = {c["key"] for c in kept if c["split"] == split}
        assert want, f"no {split} clip: the inputs should give each split one person"
        urls = run_shards(url, split)
        assert set(urls) == {f"{url}/shards/{c['shard']}" for c in kept if c["split"] == split}
        in_shards = {sample["__key__"] for sample in tar_samples({"url": u} for u in urls)}
        assert want <= in_shards
    assert len(run_shards(url, "val")) < len(every_shard)
    # With the sample index, only the split's own bytes are read (ranged reads on the bucket).
    fs = s3_server.filesystem()
    index = pq.read_table(tmp_path / "staging" / "manifests" / "samples.parquet").to_pylist()
    for split in ("train", "val", "test"):
        spans = split_spans(url, split)
        assert VoxHearWindows(url, split=split).spans == spans
        read = sum(length for shard in spans.values() for _, length in shard)
        assert read == sum(r["length"] for r in index if r["split"] == split)
        assert read < sum(fs.size(u.removeprefix("s3://")) for u in spans) or split == "train"
        got = sorted(s["__key__"] for s in tar_samples(({"url": u} for u in sorted(spans)), spans))
        assert got == sorted(c["key"] for c in kept if c["split"] == split)
    with pytest.raises(FileNotFoundError, match="no kept clip of split 'nosuch'"):
        run_shards(url, "nosuch")


def test_windows_read_from_s3_are_the_local_ones(s3_server, shards, tmp_path):  # noqa: F811
    fs = s3_server.filesystem()
    bucket = s3_server.new_bucket()
    for path in shards.paths:
        fs.put_file(str(path), f"{bucket}/shards/{path.name}")
    urls = [f"s3://{bucket}/shards/{path.name}" for path in shards.paths]
    local = VoxHearWindows([str(p) for p in shards.paths], window_frames=20, split="val")
    remote = VoxHearWindows(urls, window_frames=20, split="val")
    assert window_ids(remote) == window_ids(local) and window_ids(local)
    first_local, first_remote = next(iter(local)), next(iter(remote))
    assert np.array_equal(first_local["audio"]["self"], first_remote["audio"]["self"])


def test_a_second_driver_is_refused_while_the_first_holds_the_bucket(s3_server, tmp_path):
    fs = s3_server.filesystem()
    root = f"{s3_server.new_bucket()}/run"
    with RemoteRunLock(fs, root):
        with pytest.raises(RunLockedError, match=r"is in use by pid \d+ on host .*, started"):
            RemoteRunLock(fs, root).acquire()
    # Released: the next one takes it.
    with RemoteRunLock(fs, root):
        pass
    # A holder that died without releasing (same host, its pid gone) is taken over at once.
    fs.pipe_file(f"{root}/.lock", json.dumps({"pid": 2**22 + 7, "host": remote_run.socket.gethostname()}).encode())
    with RemoteRunLock(fs, root):
        pass
    # One on another host is taken over only once its heartbeat is older than stale_after_s.
    fs.pipe_file(f"{root}/.lock", json.dumps({"pid": 1, "host": "elsewhere"}).encode())
    with pytest.raises(RunLockedError):
        RemoteRunLock(fs, root, stale_after_s=60).acquire()
    with RemoteRunLock(fs, root, stale_after_s=0):
        pass


def test_a_run_dir_url_without_a_filesystem_is_refused_at_load():
    from voxhear.pipeline.settings import ConfigError

    with pytest.raises(ConfigError, match=r"no filesystem for 'nosuch://'"):
        load_config(None, ["inputs=[a.mp4]", "run_dir=nosuch://bucket/run"])


def test_a_takedown_on_s3_is_published_and_a_rerun_does_not_bring_it_back(
    s3_server, inputs, tmp_path, monkeypatch
):
    from tests.manifests.test_verify_takedown import samples

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # the takedown's staging copy
    url = f"s3://{s3_server.new_bucket()}/run"
    run(inputs, url, tmp_path / "staging")
    before = set(samples(published(url, tmp_path / "before")))
    key = sorted(before)[0]
    assert main(["takedown", url, "--key", key, "--reason", "test"]) == 0
    after = published(url, tmp_path / "after")
    assert set(samples(after)) == before - {key} and verify_run(after).ok
    assert key not in {r["key"] for r in pq.read_table(after / "manifests" / "samples.parquet").to_pylist()}
    # The run's own staging copy is behind the bucket now: its pull brings the takedown in.
    run(inputs, url, tmp_path / "staging")
    again = published(url, tmp_path / "again")
    assert set(samples(again)) == before - {key} and verify_run(again).ok


def test_a_cluster_run_without_a_shared_staging_dir_is_warned(monkeypatch, tmp_path):
    from voxhear.pipeline.runner import unshared_staging_warning

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    url = "s3://bucket/run"

    def warning(*overrides: str):
        return unshared_staging_warning(load_config(None, ["inputs=[a.mp4]", f"run_dir={url}", *overrides]), tmp_path)

    assert "set staging_dir to a folder every node mounts" in warning("ray.address=10.0.0.1:6379")
    assert warning("ray.address=10.0.0.1:6379", f"staging_dir={tmp_path}") is None
    assert warning() is None  # a local Ray: one machine
    assert warning("runner=local") is None
    monkeypatch.setenv("RAY_ADDRESS", "auto")
    assert warning() is not None
