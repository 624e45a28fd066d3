"""Two runs on one run directory: the second is refused at once, naming the holder; a dead holder
(even one killed with SIGKILL) holds nothing."""

import os
import signal
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from tests.conftest import SHOT_STAGES, make_video
from voxhear.pipeline.cli import main
from voxhear.pipeline.config import load_config
from voxhear.pipeline.runlock import RunLock, RunLockedError
from voxhear.pipeline.runner import run_pipeline

HOLD = "import sys; from voxhear.pipeline.runlock import RunLock; RunLock(sys.argv[1]).acquire(); " \
       "print('held', flush=True); sys.stdin.read()"


def test_a_second_run_is_refused_while_the_first_holds_the_directory(tmp_path, capsys):
    video = make_video(tmp_path / "in" / "a.mp4", seconds=1.5)
    run_dir = tmp_path / "run"
    settings = [f"inputs=[{video}]", f"run_dir={run_dir}", "runner=local", SHOT_STAGES]
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunLockedError, match=rf"in use by pid {holder.pid} on host \S+, started 20\d\d-"):
            run_pipeline(load_config(None, settings), show_progress=False)
        assert not (run_dir / "config.yaml").exists() and not (run_dir / "manifests").exists()
        # The command says it in one line and exits non-zero, whatever the runner.
        for runner in ("local", "ray"):
            code = main(["run", str(video), "--run-dir", str(run_dir), "--runner", runner, "--quiet", SHOT_STAGES])
            err = capsys.readouterr().err.strip()
            assert code == 2 and len(err.splitlines()) == 1 and f"pid {holder.pid}" in err, err
    finally:
        os.kill(holder.pid, signal.SIGKILL)  # a killed holder leaves its lock file, but no lock
        holder.wait()
    assert (run_dir / ".lock").exists()
    summary = run_pipeline(load_config(None, settings), show_progress=False)
    rows = pq.read_table(summary.run_dir / "manifests" / "sources.parquet").to_pylist()
    assert [r["status"] for r in rows] == ["ok"]
    assert f"pid {os.getpid()} " in (run_dir / ".lock").read_text()


def test_the_lock_is_released_when_the_run_ends_and_is_exclusive_within_a_process(tmp_path):
    with RunLock(tmp_path):
        with pytest.raises(RunLockedError):
            RunLock(tmp_path).acquire()
    with RunLock(tmp_path):
        pass
