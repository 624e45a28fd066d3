"""`voxhear run --ray-address` joins a cluster made with `ray start` as Ray documents it.

A head node and a worker node (one CPU each, their own ports and temp dirs) are started on this
machine with `ray start --block`, with token authentication the way Ray 2.60's `ray start --head`
turns it on: by itself, because a token is where Ray looks for one (here RAY_AUTH_TOKEN_PATH, so
that the test never touches ~/.ray). The worker joins with RAY_AUTH_MODE=token, as Ray documents
for every node; `voxhear run` is given only the address, as the issue's reporter did (without
the fix: InvalidAuthToken). The run must write what the in-process runner writes. Both nodes are
stopped by the processes this module started, never with `ray stop` (which stops every Ray on
the machine).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import SHOT_STAGES, make_video
from tests.pipeline.test_runners import comparable
from voxhear.pipeline.config import load_config
from voxhear.pipeline.runner import run_pipeline

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

RAY = shutil.which("ray", path=str(Path(sys.executable).parent)) or "ray"
AUTH_VARS = ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")
MAX_LINES = 40


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in AUTH_VARS}
    return {**env, **extra}


def processes_under(folder: str) -> list[int]:
    """PIDs whose command line names `folder` (the Ray processes of one node started here)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if folder.encode() in (entry / "cmdline").read_bytes():
                pids.append(int(entry.name))
        except OSError:
            pass
    return pids


class Node:
    """One `ray start --block` node; stop() ends it and every process under its temp dir."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        # Short: Ray's unix sockets live under the temp dir (108 bytes at most).
        self.temp_dir = tempfile.mkdtemp(prefix="vxray", dir="/tmp")
        self.output = Path(self.temp_dir) / "start.out"
        with self.output.open("wb") as out:
            self.process = subprocess.Popen(
                [
                    RAY,
                    "start",
                    "--block",
                    "--num-cpus",
                    "1",
                    "--temp-dir",
                    self.temp_dir,
                    "--disable-usage-stats",
                    "--dashboard-agent-listen-port",
                    str(free_port()),
                    *args,
                ],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def wait_started(self, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            text = self.output.read_text(errors="replace")
            if "Ray runtime started" in text:
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.5)
        raise AssertionError(f"ray start did not start a node:\n{self.output.read_text(errors='replace')[-3000:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        deadline = time.monotonic() + 10
        while processes_under(self.temp_dir) and time.monotonic() < deadline:
            time.sleep(0.5)
        for pid in processes_under(self.temp_dir):  # what did not stop in time
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        shutil.rmtree(self.temp_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> list[str]:
    folder = tmp_path_factory.mktemp("videos")
    return [
        str(make_video(folder / "cuts.mp4", seconds=3.0, cuts=2)),
        str(make_video(folder / "one.mp4", seconds=2.0, cuts=1, size="200x150")),
    ]


@pytest.fixture(scope="module")
def local_run(videos, tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("local") / "run"
    listed = "[" + ",".join(videos) + "]"
    run_pipeline(
        load_config(None, [f"inputs={listed}", f"run_dir={run_dir}", "runner=local", SHOT_STAGES]), show_progress=False
    )
    return run_dir


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, s3_server):
    """(address, env of a client that has the cluster's token where Ray looks for one)."""
    token = tmp_path_factory.mktemp("auth") / "auth_token"
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    # No draining on SIGTERM (Ray waits 30 s for it by default). Every node has the object store's
    # credentials and endpoint, as deploy/kuberay gives every group: the shard writer, on a
    # worker, uploads the shards of a run directory on S3 itself.
    env = clean_env(
        RAY_AUTH_TOKEN_PATH=str(token), RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="0", **s3_server.env
    )
    port = free_port()
    address = f"127.0.0.1:{port}"
    nodes: list[Node] = []
    try:
        nodes.append(
            Node(
                [
                    "--head",
                    "--port",
                    str(port),
                    "--include-dashboard",
                    "false",
                    "--dashboard-port",
                    str(free_port()),
                    "--ray-client-server-port",
                    str(free_port()),
                ],
                env,
            )
        )
        nodes[0].wait_started()
        assert "Token authentication is enabled" in nodes[0].output.read_text(errors="replace")
        nodes.append(Node(["--address", address], {**env, "RAY_AUTH_MODE": "token"}))
        nodes[1].wait_started()
        wait_for_nodes(address, {**env, "RAY_AUTH_MODE": "token"}, count=2)
        yield address, env
    finally:
        for node in reversed(nodes):
            node.stop()


def wait_for_nodes(address: str, env: dict[str, str], count: int, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    status = ""
    while time.monotonic() < deadline:
        status = subprocess.run(
            [RAY, "status", "--address", address], env=env, capture_output=True, text=True, timeout=60
        ).stdout
        active = status.partition("Active:")[2].partition("Pending:")[0]
        if active.count("node_") >= count:
            return
        time.sleep(1)
    raise AssertionError(f"the cluster at {address} did not get {count} nodes:\n{status}")


def voxhear_run(
    inputs: list[str], run_dir: Path, *args: str, env: dict[str, str], timeout_s: float = 300
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "voxhear.pipeline.cli", "run", *inputs, "--run-dir", str(run_dir), *args, SHOT_STAGES],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


def test_run_joins_a_two_node_cluster_with_token_auth(cluster, videos, local_run, tmp_path):
    address, env = cluster
    run_dir = tmp_path / "run"
    done = voxhear_run(videos, run_dir, "--ray-address", address, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "status: ok 2" in done.stdout and "Traceback" not in done.stderr
    assert comparable(run_dir) == comparable(local_run)
    # Ray's own output went to the run's log, not the terminal.
    lines = (done.stdout + done.stderr).splitlines()
    assert len(lines) <= MAX_LINES, "\n".join(lines)
    assert "Connected to Ray cluster" in (run_dir / "logs" / "ray.log").read_text()


def test_a_cluster_run_publishes_to_a_run_dir_on_s3(cluster, s3_server, videos, local_run, tmp_path):
    """The run directory on the S3 server (the driver stages it locally and publishes each commit)."""
    from voxhear.pipeline.remote_run import RemoteRunDir

    address, env = cluster
    url = f"s3://{s3_server.new_bucket()}/run"
    done = voxhear_run(
        videos, url, "--ray-address", address, env={**env, **s3_server.env, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    )
    assert done.returncode == 0, done.stderr[-3000:]
    staging = Path(done.stdout.partition(f"run directory: {url} (staged in ")[2].partition(")")[0])
    assert staging.is_relative_to(tmp_path / "cache"), done.stdout
    pulled = tmp_path / "pulled"
    RemoteRunDir(url, pulled).pull()
    # The manifests name work files by the staging path, which comparable() takes out.
    assert comparable(staging) == comparable(local_run)
    for name in ("sources.parquet", "clips.parquet"):
        assert (pulled / "manifests" / name).read_bytes() == (staging / "manifests" / name).read_bytes()
    assert sorted(p.name for p in (pulled / "shards").iterdir()) == sorted(
        p.name for p in (local_run / "shards").iterdir()
    )


def one_line_error(done: subprocess.CompletedProcess) -> str:
    assert done.returncode != 0 and done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("voxhear: error: "), done.stderr[-3000:]
    return lines[0]


def test_wrong_token_is_one_line(cluster, videos, tmp_path):
    address, env = cluster
    # One attempt instead of Ray's 20 (one a second) before it gives up.
    env = {**env, "RAY_AUTH_TOKEN": "not-the-token", "RAY_gcs_server_port_wait_time_s": "1"}
    line = one_line_error(voxhear_run(videos, tmp_path / "run", "--ray-address", address, env=env))
    assert f"cluster at {address} did not accept" in line and "RAY_AUTH_TOKEN" in line


def test_client_without_token_auth_is_told_what_to_set(cluster, videos, tmp_path):
    address, env = cluster
    env = {**env, "RAY_AUTH_MODE": "disabled", "RAY_gcs_server_port_wait_time_s": "1"}
    line = one_line_error(voxhear_run(videos, tmp_path / "run", "--ray-address", address, env=env))
    assert "requires token authentication: set RAY_AUTH_MODE=token" in line
