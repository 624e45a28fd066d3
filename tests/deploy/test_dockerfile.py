"""The Dockerfile, read as text: Python as pyproject requires, exactly the locked stack, ffmpeg, no
model weights, and a build context (.dockerignore) that keeps out the venv, runs and caches but
not what the build needs. Building it is tests/deploy/test_docker_build.py (needs a container tool)."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib

from packaging.specifiers import SpecifierSet

from tests.deploy.deploy_files import (
    CLUSTER_REQUIREMENTS,
    DEPLOY,
    DOCKERFILE,
    LOCK,
    PYPROJECT,
    ROOT,
    canonical,
    docker_ignored,
    dockerfile_args,
    dockerfile_instructions,
    dockerignore_patterns,
    documented_image,
    final_stage,
    key_values,
    read_pins,
)
from voxhear.pipeline import __version__


def runs(stage: str | None = None) -> list[str]:
    return [i.args for i in dockerfile_instructions() if i.keyword == "RUN" and (stage is None or i.stage == stage)]


def pip_installs() -> list[list[str]]:
    """The argument lists of every `pip install` in a RUN (a RUN may chain several with &&)."""
    found = []
    for command in runs():
        for part in re.split(r"&&|;|\|\|", command):
            words = part.split()
            for n in range(len(words) - 1):
                if words[n].endswith("pip") and words[n + 1] == "install":
                    found.append(words[n + 2 :])
    return found


def test_python_version_is_the_one_pyproject_requires():
    requires = tomllib.loads(PYPROJECT.read_text())["project"]["requires-python"]
    instructions = dockerfile_instructions()
    version = dockerfile_args(instructions)["PYTHON_VERSION"]
    assert re.fullmatch(r"3\.\d+", version), f"PYTHON_VERSION={version}: name a minor version (3.11)"
    spec = SpecifierSet(requires)
    assert f"{version}.0" in spec and f"{version}.99" in spec, (
        f"python {version} is not what pyproject requires ({requires})"
    )
    bases = [i.args.split()[0] for i in instructions if i.keyword == "FROM"]
    assert len(bases) >= 2, "expected a build stage and a runtime stage"
    for base in bases:
        assert base.startswith("python:${PYTHON_VERSION}-"), (
            f"FROM {base}: every stage must use the PYTHON_VERSION image"
        )


def test_the_locked_set_is_installed_from_the_lock():
    installs = pip_installs()
    assert ["-r", "requirements.lock"] in installs, "no `pip install -r requirements.lock`"
    copies = [i.args for i in dockerfile_instructions() if i.keyword == "COPY"]
    assert any(c.split()[0] == "requirements.lock" for c in copies), "requirements.lock is not copied in"
    for args in installs:
        if args == ["-r", "requirements.lock"]:
            continue
        # Any other install either installs nothing new (--no-deps) or is held to the lock.
        held = "--no-deps" in args or any(args[n : n + 2] == ["-c", "requirements.lock"] for n in range(len(args)))
        assert held, f"`pip install {' '.join(args)}` is not held to requirements.lock (-c) nor --no-deps"


def test_every_pin_in_the_dockerfile_and_the_cluster_extras_matches_the_lock():
    lock = read_pins(LOCK)
    inline = {}
    for args in pip_installs():
        for word in args:
            match = re.fullmatch(r"['\"]?([A-Za-z0-9][\w.-]*)(?:\[[^\]]*\])?==([^\s'\"]+)['\"]?", word)
            if match:
                inline[canonical(match.group(1))] = match.group(2)
    extras = read_pins(CLUSTER_REQUIREMENTS)
    assert extras.get("ray") == lock["ray"], "deploy/requirements-cluster.txt must pin the lock's ray (with [default])"
    assert "ray[default]" in CLUSTER_REQUIREMENTS.read_text()
    for source, pins in (("Dockerfile", inline), ("deploy/requirements-cluster.txt", extras)):
        for name, version in pins.items():
            if name in lock:
                assert version == lock[name], f"{source} pins {name}=={version}, the lock has {lock[name]}"


def test_the_build_checks_the_installed_set_against_the_lock():
    commands = " ".join(runs("python"))
    assert "check_lock.py requirements.lock requirements-cluster.txt" in commands
    assert "pip check" in commands


def test_check_lock_passes_on_this_venv_and_reports_a_drift(tmp_path):
    """deploy/check_lock.py, the check the build runs: this venv was installed from the lock."""
    script = DEPLOY / "check_lock.py"
    ok = subprocess.run([sys.executable, script, LOCK], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    drifted = tmp_path / "drifted.txt"
    drifted.write_text("# comment\nPyYAML==0.0.1\nray[default]==2.60.0\nno-such-package-here==1.0\n")
    bad = subprocess.run([sys.executable, script, drifted], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1
    assert "pyyaml: " in bad.stderr and "pinned 0.0.1" in bad.stderr
    assert "no-such-package-here: not installed" in bad.stderr
    assert "ray:" not in bad.stderr  # the lock's ray, read through its extra


def test_ffmpeg_is_installed_in_the_runtime_stage():
    last = final_stage(dockerfile_instructions())
    apt = [r for r in runs(last) if "apt-get install" in r]
    assert apt and any(re.search(r"(^|\s)ffmpeg(\s|$)", r) for r in apt), "the runtime stage installs no ffmpeg"
    assert any("ffmpeg" in r and "-version" in r for r in runs(last)), "the build does not run ffmpeg once"


def test_the_runtime_stage_points_at_a_mounted_model_store_and_bakes_in_no_weights():
    instructions = dockerfile_instructions()
    last = final_stage(instructions)
    env = {}
    for ins in instructions:
        if ins.stage == last and ins.keyword == "ENV":
            env.update(key_values(ins.args))
    assert env.get("VOXHEAR_MODEL_DIR") == "/models"
    for ins in instructions:
        if ins.keyword in ("COPY", "ADD"):
            assert "models" not in ins.args.split()[0], f"line {ins.line}: model weights must not be baked in"
        if ins.keyword == "RUN":
            for command in re.split(r"&&|;|\|\|", ins.args):
                words = command.split()
                downloads = words[:1] in (["curl"], ["wget"]) or (
                    "models" in words and "verify" in words and "--no-download" not in words
                )
                assert not downloads, f"line {ins.line}: `{command.strip()}` would put weights into the image"


def test_the_documented_tag_is_the_package_version():
    image = documented_image()
    name, _, tag = image.rpartition(":")
    assert name.endswith("/voxhear") and tag == __version__, f"{image}: expected REGISTRY/voxhear:{__version__}"
    labels = {}
    for ins in dockerfile_instructions():
        if ins.keyword == "LABEL":
            labels.update(key_values(ins.args))
    assert labels.get("org.opencontainers.image.version") == __version__


def test_dockerignore_leaves_out_the_venv_runs_and_caches_but_not_the_build_inputs():
    patterns = dockerignore_patterns()
    for path in (
        ".venv/bin/python",
        "runs/demo/config.yaml",
        "build/typecheck",
        ".git/HEAD",
        "pipeline/__pycache__/io.cpython-311.pyc",
        ".mypy_cache/3.11",
        ".pytest_cache/v",
        ".ruff_cache/x",
        "voxhear.egg-info/PKG-INFO",
        "sample/videos/a.mp4",
    ):
        assert docker_ignored(path, patterns), f"{path} would be sent to the build"
    packages = tomllib.loads(PYPROJECT.read_text())["tool"]["setuptools"]["package-dir"].values()
    needed = [
        "pyproject.toml",
        "README.md",
        "requirements.lock",
        "deploy/requirements-cluster.txt",
        "deploy/check_lock.py",
        *(f"{folder}/__init__.py" for folder in packages),
    ]
    for path in needed:
        assert (ROOT / path).exists(), path
        assert not docker_ignored(path, patterns), f"{path} is needed by the build but left out of its context"
    # The data files the wheel ships (model registries) too.
    for tsv in ROOT.glob("*/models.tsv"):
        assert not docker_ignored(str(tsv.relative_to(ROOT)), patterns)


def test_the_ignore_matcher_follows_docker_rules():
    assert docker_ignored("a/b/__pycache__/x.pyc", ["**/__pycache__"])
    assert docker_ignored("runs/x", ["runs"]) and not docker_ignored("stages/runs.py", ["runs"])
    assert not docker_ignored("sample/keep.txt", ["sample", "!sample/keep.txt"])
    assert DOCKERFILE.is_file()
