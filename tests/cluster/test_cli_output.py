"""What `voxhear run` with the Ray runner prints: a progress bar and the summary, Ray's own output
going to RUN/logs/ray.log; a Ray cluster that cannot be joined is one line saying what to set."""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import socket
import subprocess
import sys
import time

import pytest

from tests.conftest import SHOT_STAGES, make_video
from voxhear.pipeline.executors import _join_failure

MAX_LINES = 40


def run_cli(*args: str, timeout_s: float = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    return subprocess.run(
        [sys.executable, "-m", "voxhear.pipeline.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


@pytest.mark.timeout(120)
def test_no_cluster_at_the_address_is_one_line_at_once(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    video = make_video(tmp_path / "a.mp4", seconds=1.0)
    started = time.monotonic()
    done = run_cli(
        "run", str(video), "--run-dir", str(tmp_path / "run"), "--ray-address", f"127.0.0.1:{port}", SHOT_STAGES
    )
    assert done.returncode == 1 and done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"voxhear: error: no Ray cluster answers at 127.0.0.1:{port}")
    assert "--ray-address" in lines[0]
    assert time.monotonic() - started < 60  # Ray alone retries for 20 s; here it is the imports


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_ray_run_prints_progress_and_summary_only(tmp_path):
    videos = [
        str(make_video(tmp_path / "cuts.mp4", seconds=3.0, cuts=2)),
        str(make_video(tmp_path / "one.mp4", seconds=2.0)),
    ]
    run_dir = tmp_path / "run"
    done = run_cli("run", *videos, "--run-dir", str(run_dir), "runner=ray", "ray.num_cpus=2", SHOT_STAGES)
    assert done.returncode == 0, done.stderr[-3000:]
    # str.splitlines also splits at the carriage returns of the progress bar's updates.
    lines = (done.stdout + done.stderr).splitlines()
    assert len(lines) <= MAX_LINES, "\n".join(lines)
    assert "status: ok 2" in done.stdout and f"ray log: {run_dir / 'logs' / 'ray.log'}" in done.stdout
    assert "inputs: 100%" in done.stderr and ", failed 0" in done.stderr  # the progress bar
    assert not any(word in done.stdout + done.stderr for word in ("Dataset", "MapBatches", "ray.data", "INFO"))
    log = (run_dir / "logs" / "ray.log").read_text()
    assert "Dataset" in log and "MapBatches" in log  # Ray Data's plan and progress, there instead


def test_ray_output_to_sends_fd2_and_ray_loggers_to_the_file(tmp_path, capfd):
    from voxhear.pipeline import raylog

    path = tmp_path / "logs" / "ray.log"
    with raylog.ray_output_to(path):
        assert raylog.active()
        os.write(2, b"written to fd 2 (Ray's C++ core)\n")
        logging.getLogger("ray.data").warning("a Ray Data warning")
        logging.getLogger("ray").warning("a Ray warning")
        print("voxhear's own stderr", file=sys.stderr)
    assert not raylog.active()
    os.write(2, b"fd 2 restored\n")
    err = capfd.readouterr().err
    text = path.read_text()
    assert "written to fd 2" in text and "a Ray Data warning" in text and "a Ray warning" in text
    assert "voxhear's own stderr" in err and "fd 2 restored" in err
    assert "written to fd 2" not in err and "a Ray warning" not in err


def test_join_failures_say_what_to_set(monkeypatch):
    def chained(*messages: str) -> BaseException:
        error: BaseException | None = None
        for message in messages:
            try:
                raise RuntimeError(message) from error
            except RuntimeError as raised:
                error = raised
        assert error is not None
        return error

    auth = chained("AuthenticationError: RPC error: InvalidAuthToken: token missing", "Failed to connect")
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    line = _join_failure("10.0.0.5:6379", auth)
    assert "requires token authentication: set RAY_AUTH_MODE=token" in line and "\n" not in line
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    assert "did not accept this process's authentication token" in _join_failure("10.0.0.5:6379", auth)

    mismatch = chained(
        "Version mismatch: The cluster was started with:\n    Ray: 2.59.0\n    Python: 3.11.7\n"
        "This process on node 10.0.0.9 was started with:\n    Ray: 2.60.0\n    Python: 3.11.7\n"
    )
    line = _join_failure("10.0.0.5:6379", mismatch)
    assert "runs Ray 2.59.0 on Python 3.11.7, this environment Ray 2.60.0" in line and "\n" not in line

    other = _join_failure("10.0.0.5:6379", chained("Traceback ...\nOSError: the real cause", "Failed to connect"))
    assert other.startswith("could not join the Ray cluster at 10.0.0.5:6379: OSError: the real cause")
    assert "\n" not in other


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.skipif(shutil.which("script") is None, reason="needs script(1) (util-linux) for a terminal")
def test_ray_run_in_a_terminal_does_not_hang(tmp_path):
    """Run from a terminal (stdin a tty), Ray's workers inherited it and scenedetect's `ffmpeg -v
    quiet` probe in scene_cut was stopped by the kernel (SIGTTOU: a background process touching
    the terminal): the run waited forever. The local Ray now starts with stdin on /dev/null."""
    video = make_video(tmp_path / "a.mp4", seconds=2.0)
    run_dir = tmp_path / "run"
    command = shlex.join(
        [
            sys.executable,
            "-m",
            "voxhear.pipeline.cli",
            "run",
            str(video),
            "--run-dir",
            str(run_dir),
            "runner=ray",
            "ray.num_cpus=2",
            SHOT_STAGES,
        ]
    )
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    try:
        done = subprocess.run(
            ["script", "-qefc", f"stty cols 100 rows 30; {command}", "/dev/null"],
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=180,
        )
    except subprocess.TimeoutExpired as hung:
        raise AssertionError("the run in a terminal hung") from hung
    assert done.returncode == 0, done.stdout[-3000:]
    assert "status: ok 1" in done.stdout and "inputs: 100%" in done.stdout  # the terminal shows both
