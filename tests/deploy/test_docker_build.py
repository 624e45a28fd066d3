"""Build the Dockerfile's Python stage (the locked stack, Ray's cluster extras, voxhear, and the
lock check that runs at its end) with whatever container tool is here: docker with a reachable
daemon, podman or buildah.

Skipped where none is usable (CI's machines have at most the docker client, no daemon), and
unless VOXHEAR_DOCKER_BUILD=1: the stage downloads about 9 GB (torch's CUDA wheels) and takes many
minutes, too much for every `make test`.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.deploy.deploy_files import ROOT

OPT_IN = "VOXHEAR_DOCKER_BUILD"


def container_tool() -> list[str] | None:
    """The build command prefix of the first usable tool, or None."""
    if shutil.which("docker"):
        info = subprocess.run(["docker", "info"], capture_output=True, timeout=60)
        if info.returncode == 0:
            return ["docker", "build"]
    if shutil.which("podman"):
        return ["podman", "build"]
    if shutil.which("buildah"):
        return ["buildah", "bud"]
    return None


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_the_python_stage_builds():
    if os.environ.get(OPT_IN) != "1":
        pytest.skip(f"a 9 GB build: set {OPT_IN}=1 to run it")
    tool = container_tool()
    if tool is None:
        pytest.skip("no usable container tool (docker with a daemon, podman or buildah)")
    build = subprocess.run(
        [*tool, "--target", "python", "-t", "voxhear-python-stage:test", str(ROOT)],
        capture_output=True,
        text=True,
        timeout=3500,
    )
    assert build.returncode == 0, build.stdout[-4000:] + build.stderr[-4000:]
