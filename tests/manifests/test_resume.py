"""Kill a real run at different moments; the rerun ends with exactly the uninterrupted samples."""

import collections
import hashlib
import os
import signal
import subprocess
import sys
import tarfile
import time

import pytest

from tests.conftest import SHOT_STAGES, make_video
from tests.pipeline.test_runners import comparable
from voxhear.pipeline.config import load_config
from voxhear.pipeline.runner import run_pipeline

SETTINGS = ["runner=local", "shards.max_samples=3", SHOT_STAGES]


def shard_contents(run_dir):
    """{member name: sha256} over every published shard, and the list of sample keys seen."""
    digests, keys = {}, []
    for shard in sorted((run_dir / "shards").glob("*.tar")):
        with tarfile.open(shard) as tar:
            for member in tar.getmembers():
                digests[member.name] = hashlib.sha256(tar.extractfile(member).read()).hexdigest()
                if member.name.endswith(".json"):
                    keys.append(member.name[: -len(".json")])
    return digests, keys


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("resume-inputs")
    for i in range(6):
        make_video(folder / f"video{i}.mp4", seconds=2.0 + 0.4 * i, cuts=2, size="160x120")
    (folder / "broken.mp4").write_text("nope")
    return folder


@pytest.fixture(scope="module")
def reference(videos, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    run_pipeline(load_config(None, [f"inputs=[{videos}]", f"run_dir={run_dir}", *SETTINGS]), show_progress=False)
    return run_dir


@pytest.mark.slow
@pytest.mark.parametrize("commits_before_kill", [1, 3])
def test_kill_and_resume(videos, reference, tmp_path, commits_before_kill):
    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "voxhear.pipeline.cli", "run", str(videos), "--run-dir", str(run_dir), "--quiet",
               *SETTINGS]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ledger = run_dir / "manifests" / "_ledger"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if ledger.exists() and len(list(ledger.glob("*-sources.parquet"))) >= commits_before_kill:
            break
        time.sleep(0.02)
    assert process.poll() is None, "the run finished before it could be killed; make it longer"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    committed_before = len(list(ledger.glob("*-sources.parquet")))
    assert committed_before >= commits_before_kill

    summary = run_pipeline(load_config(None, [f"inputs=[{videos}]", f"run_dir={run_dir}", *SETTINGS]),
                           show_progress=False)
    assert summary.skipped >= 1  # the committed inputs were not processed again

    got, keys = shard_contents(run_dir)
    want, want_keys = shard_contents(reference)
    assert [k for k, n in collections.Counter(keys).items() if n > 1] == []  # no duplicates
    assert set(got) == set(want)  # nothing lost, nothing extra
    assert {n: got[n] for n in got if not n.endswith(".mp4")} == {n: want[n] for n in want if not n.endswith(".mp4")}
    assert comparable(run_dir) == comparable(reference)
    leftovers = [p.name for p in (run_dir / "shards").iterdir() if not p.name.endswith(".tar")]
    assert leftovers == []
