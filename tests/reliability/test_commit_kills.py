"""A run, and a takedown, killed at every step of every commit: the rerun ends with exactly the samples
of an uninterrupted run, and `voxhear verify` passes.

tests/manifests/test_resume.py kills a real run after whole commits; here the process dies inside a
commit, just before each of its filesystem steps in turn (harness.run_forked): a shard published
(temp -> NNNNNN.tar), the ledger's clips, shards and sources parts, the consolidated sources.parquet
and clips.parquet. The stages are stand-ins (fakes.py) so that each of the dozens of runs takes
milliseconds; the sink, ledger and consolidation are the real ones.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.manifests.test_verify_takedown import samples
from tests.reliability.fakes import PLAIN, synthetic_video, use_synthetic_stages
from tests.reliability.harness import KILLED, assert_same_samples, run_forked
from voxhear.manifests.integrity import shard_records, takedown_records
from voxhear.manifests.takedown import takedown
from voxhear.manifests.verify import verify_run
from voxhear.pipeline.config import load_config
from voxhear.pipeline.runner import run_pipeline

SETTINGS = ["runner=local", "shards.max_samples=2", PLAIN]

# Dozens of whole (stand-in) runs each: seconds, not milliseconds.
pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def synthetic(monkeypatch):
    use_synthetic_stages(monkeypatch)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """a (3 shots) spans two shards, so its first samples commit before it does; b is broken (a
    failed row, committed without samples); c (2 shots) spans the last two shards."""
    folder = tmp_path_factory.mktemp("synthetic-inputs")
    synthetic_video(folder / "a.mp4", shots=3, identity=0)
    (folder / "b_broken.mp4").write_text("not a video")
    synthetic_video(folder / "c.mp4", shots=2, identity=1)
    return folder


def run(inputs: Path, run_dir: Path):
    return run_pipeline(load_config(None, [f"inputs=[{inputs}]", f"run_dir={run_dir}", *SETTINGS]), show_progress=False)


def watched(run_dir: Path) -> list[Path]:
    return [run_dir / "shards", run_dir / "manifests"]


def test_a_run_killed_before_any_step_of_a_commit_resumes_to_the_reference(inputs, tmp_path):
    reference = tmp_path / "reference"
    code, steps = run_forked(lambda: run(inputs, reference), watched(reference))
    assert code == 0
    # Every kind of step of a commit and of the consolidation, the three commits in order.
    assert steps == [
        "replace shards/000000.tar",
        "replace manifests/_ledger/000000-clips.parquet",
        "replace manifests/_ledger/000000-shards.parquet",
        "replace manifests/_ledger/000000-sources.parquet",  # a's first two samples, no source yet
        "replace shards/000001.tar",
        "replace manifests/_ledger/000001-clips.parquet",
        "replace manifests/_ledger/000001-shards.parquet",
        "replace manifests/_ledger/000001-sources.parquet",  # a and the broken b
        "replace shards/000002.tar",
        "replace manifests/_ledger/000002-clips.parquet",
        "replace manifests/_ledger/000002-shards.parquet",
        "replace manifests/_ledger/000002-sources.parquet",  # c
        "replace manifests/sources.parquet",
        "replace manifests/clips.parquet",
        "replace manifests/samples.parquet",  # the sample index, last
    ]
    statuses = {
        r["source_uri"].rsplit("/", 1)[1]: r["status"]
        for r in pq.read_table(reference / "manifests" / "sources.parquet").to_pylist()
    }
    assert statuses == {"a.mp4": "ok", "b_broken.mp4": "failed", "c.mp4": "ok"}

    for k in range(len(steps)):
        run_dir = tmp_path / f"killed-before-step-{k}"
        code, done = run_forked(lambda run_dir=run_dir: run(inputs, run_dir), watched(run_dir), kill_at=k)
        assert (code, done) == (KILLED, steps[:k])
        # A second kill, in the resume's first step, must not matter either.
        code, _ = run_forked(lambda run_dir=run_dir: run(inputs, run_dir), watched(run_dir), kill_at=0)
        assert code == KILLED
        summary = run(inputs, run_dir)
        committed = sum(s.endswith("-sources.parquet") for s in steps[:k])
        assert summary.skipped == {0: 0, 1: 0, 2: 2, 3: 3}[committed]  # committed inputs are not redone
        assert_same_samples(run_dir, reference)


# ---------------------------------------------------------------- takedown


def test_a_takedown_killed_at_any_step_never_brings_its_samples_back(inputs, tmp_path):
    reference = tmp_path / "reference"
    run(inputs, reference)
    before = samples(reference)
    layout: dict[str, list[str]] = {}  # a0 a1 | a2 c0 | c1
    for key, shard in before.items():
        layout.setdefault(shard, []).append(key)
    assert [len(layout[s]) for s in sorted(layout)] == [2, 2, 1]
    # One key of the first shard (that shard is rewritten without it) and the source of the last
    # shard's sample (its other sample shares the middle shard: rewritten; the last: removed).
    key = sorted(layout["000000.tar"])[1]
    source_id = layout["000002.tar"][0].split("-")[0]
    gone = {key} | {k for k in before if k.startswith(source_id)}

    def take_down(run_dir: Path):
        return takedown(run_dir, keys=[key], source_ids=[source_id], reason="request 17")

    done_ref = tmp_path / "done"
    shutil.copytree(reference, done_ref)
    code, steps = run_forked(lambda: take_down(done_ref), watched(done_ref))
    assert code == 0
    assert steps == [
        "replace manifests/_ledger/000003-shards.parquet",
        "replace manifests/_ledger/000003-takedowns.parquet",
        "replace manifests/_ledger/000003-sources.parquet",  # the commit record
        "replace shards/000000.tar",  # rewritten without the key
        "replace shards/000001.tar",  # rewritten without the source's first sample
        "unlink shards/000002.tar",  # held only the source's second sample
        "replace manifests/takedowns.parquet",
        "replace manifests/sources.parquet",
        "replace manifests/clips.parquet",
        "replace manifests/samples.parquet",  # the index: spans moved in the rewritten shards
    ]
    assert set(samples(done_ref)) == set(before) - gone and verify_run(done_ref).ok

    for k in range(len(steps)):
        run_dir = tmp_path / f"takedown-killed-before-step-{k}"
        shutil.copytree(reference, run_dir)
        code, done = run_forked(lambda run_dir=run_dir: take_down(run_dir), watched(run_dir), kill_at=k)
        assert (code, done) == (KILLED, steps[:k])
        committed = takedown_records(run_dir).num_rows > 0
        assert committed == (k > steps.index("replace manifests/_ledger/000003-sources.parquet"))
        run(inputs, run_dir)  # the resume: rolls a committed takedown forward, else leaves the run as it was
        if not committed:
            assert set(samples(run_dir)) == set(before)
            assert verify_run(run_dir).ok
            take_down(run_dir)  # asked again, it completes
            run(inputs, run_dir)
        assert set(samples(run_dir)) == set(before) - gone
        kept = {r["key"] for r in pq.read_table(run_dir / "manifests" / "clips.parquet").to_pylist()}
        assert not gone & kept
        assert {r.cause for r in shard_records(run_dir).values()} == {"takedown"}  # every shard was touched
        report = verify_run(run_dir)
        assert report.ok, [p.format() for p in report.problems]
        assert report.takedowns == len(gone)
