"""The Ray runner under faults: a worker killed mid-stage (as a task and as an actor), and a second
run started on the run directory of a Ray run in progress."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading

import pyarrow.parquet as pq
import pytest
import ray

from tests.reliability.conftest import media_config
from tests.reliability.harness import assert_same_samples
from voxhear.pipeline import registry
from voxhear.pipeline.cli import main
from voxhear.pipeline.runner import run_pipeline

pytestmark = pytest.mark.slow

KILL_STAGES = "stages=[ingest, scene_cut, shot_media, kill_once]"


@pytest.fixture(scope="module")
def ray_started():
    """One local Ray for the module (each run would otherwise start and stop its own); "local": a
    new one even where another process on the machine runs a Ray cluster (plain init would join it)."""
    ray.shutdown()
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.ERROR)
    yield
    ray.shutdown()


@pytest.fixture(autouse=True)
def kill_once_registered(monkeypatch):
    monkeypatch.setattr(registry, "STAGES", registry.STAGES + ("tests.reliability.fakes:KillOnce",))


@pytest.mark.parametrize("actor", [False, True], ids=["task", "actor"])
def test_a_worker_killed_mid_stage_is_retried_and_the_run_completes(
    ray_started, media_inputs, media_reference, tmp_path, actor
):
    """Ray Data retries the killed task (tasks: Ray's max_retries; actors: restarted, max_task_retries=-1):
    the run completes in one attempt with exactly the reference's samples, none twice."""
    markers = tmp_path / "markers"
    markers.mkdir()
    run_dir = tmp_path / "run"
    config = media_config(
        media_inputs,
        run_dir,
        KILL_STAGES,
        f"kill_once.marker_dir={markers}",
        f"kill_once.actor={str(actor).lower()}",
        runner="ray",
    )
    summary = run_pipeline(config, show_progress=False)
    pid, key = (markers / "killed").read_text().split()
    assert int(pid) != os.getpid()  # a worker died, not the driver
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid), 0)
    assert summary.skipped == 0 and summary.status_counts == {"ok": 2, "failed": 1}
    assert key in {r["key"] for r in pq.read_table(run_dir / "manifests" / "clips.parquet").to_pylist()}
    assert_same_samples(run_dir, media_reference, media=False)


def test_a_second_run_is_refused_while_a_ray_run_holds_the_directory(
    ray_started, media_inputs, media_reference, tmp_path, capsys
):
    """tests/pipeline/test_run_lock.py refuses runs while a bare lock holder lives; here the holder
    is a Ray run with work in flight. The second run (in another process, or the same one) is
    refused at once, changes nothing, and the first completes as if alone."""
    gate = tmp_path / "gate" / "open"
    gate.parent.mkdir()
    run_dir = tmp_path / "run"
    config = media_config(media_inputs, run_dir, KILL_STAGES, f"kill_once.hold_until={gate}", runner="ray")
    outcome: dict[str, object] = {}

    def first_run() -> None:
        try:
            outcome["summary"] = run_pipeline(config, show_progress=False)
        except BaseException as error:  # reported by the main thread
            outcome["error"] = error

    thread = threading.Thread(target=first_run)
    thread.start()
    try:
        holding = gate.parent / "holding"
        thread.join(timeout=0)
        for _ in range(1200):  # a worker is inside the stage: the run holds the lock with work in flight
            if holding.exists() or not thread.is_alive():
                break
            thread.join(timeout=0.05)
        assert holding.exists(), outcome
        ledger_before = sorted(p.name for p in (run_dir / "manifests" / "_ledger").iterdir())

        other = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; from voxhear.pipeline.runlock import RunLock; RunLock(sys.argv[1]).acquire()",
                str(run_dir),
            ],
            capture_output=True,
            text=True,
        )
        assert (
            other.returncode == 1
            and f"RunLockedError: run directory {run_dir} is in use by pid {os.getpid()} on host" in other.stderr
        ), other.stderr
        for runner in ("ray", "local"):
            code = main(
                [
                    "run",
                    str(media_inputs),
                    "--run-dir",
                    str(run_dir),
                    "--runner",
                    runner,
                    "--quiet",
                    "shards.max_samples=2",
                    KILL_STAGES,
                ]
            )
            err = capsys.readouterr().err.strip().splitlines()
            assert code == 2 and f"in use by pid {os.getpid()}" in err[-1], err
        assert sorted(p.name for p in (run_dir / "manifests" / "_ledger").iterdir()) == ledger_before
    finally:
        gate.touch()
        thread.join(timeout=300)
    assert not thread.is_alive() and "error" not in outcome, outcome
    assert outcome["summary"].status_counts == {"ok": 2, "failed": 1}
    assert_same_samples(run_dir, media_reference, media=False)
