"""The wheel works on its own: built from the source, installed into a fresh venv outside the
checkout, its `voxhear` command lists the models, prints the config and writes a datasheet.

The fresh venv reuses this venv's dependencies through a .pth line naming its site-packages
(a plain path line: the editable install's own .pth there is not processed, so the checkout
cannot leak in), and the wheel itself is installed without dependencies.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import site
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pytest
import yaml

from tests.conftest import SHARED_MODELS, require_shared
from tests.qc.qc_helpers import build_run

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
# Top-level entries of the checkout a build does not read (and .venv is gigabytes).
NOT_SOURCE = {".git", ".venv", ".lockenv", "runs", "build", ".pytest_cache", ".mypy_cache", ".ruff_cache",
              ".whl", ".gl"}


def _run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None, timeout: float = 600,
         check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check:
        assert result.returncode == 0, f"{args} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result


def _can_build_offline() -> bool:
    """This venv has what pyproject's [build-system] asks for, so pip needs no index to build."""
    try:
        setuptools = tuple(int(p) for p in importlib.metadata.version("setuptools").split(".")[:2])
        importlib.metadata.version("wheel")
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return False
    return setuptools >= (68, 0)


class Installed:
    def __init__(self, base: Path, wheel: Path, venv: Path, site_packages: Path) -> None:
        self.base, self.wheel, self.venv, self.site_packages = base, wheel, venv, site_packages
        self.cwd = base / "cwd"
        self.cwd.mkdir(exist_ok=True)
        self.env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
        self.env.update(VOXHEAR_MODEL_DIR=str(SHARED_MODELS), VOXHEAR_OFFLINE="1", HF_HUB_OFFLINE="1",
                        VOXHEAR_CACHE_DIR=str(base / "cache"), PATH=f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}")

    def voxhear(self, *args: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
        """The installed console script, run from a folder outside the checkout."""
        return _run(self.venv / "bin" / "voxhear", *args, cwd=self.cwd, env=self.env, check=check)

    def python(self, code: str) -> str:
        return _run(self.venv / "bin" / "python", "-c", code, cwd=self.cwd, env=self.env).stdout.strip()


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Installed:
    base = tmp_path_factory.mktemp("wheel")
    # Built from a copy: an in-tree build would leave build/ and *.egg-info in a checkout others use.
    source = base / "source"

    def ignore(folder: str, names: list[str]) -> list[str]:
        top = Path(folder) == REPO
        return [n for n in names if n == "__pycache__" or (top and (n in NOT_SOURCE or n.endswith(".egg-info")))]

    shutil.copytree(REPO, source, ignore=ignore)
    wheels = base / "wheels"
    isolation = ["--no-build-isolation"] if _can_build_offline() else []  # else pip fetches them, as `make install`
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", *isolation, "-w", wheels, source, cwd=base)
    (wheel,) = wheels.glob("voxhear-*.whl")

    venv = base / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=base)
    python = venv / "bin" / "python"
    # Installed before the .pth below exists, so pip sees no voxhear (the editable one) to replace.
    _run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "-q", wheel, cwd=base)
    site_packages = Path(_run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])",
                              cwd=base).stdout.strip())
    ours = dict.fromkeys([*site.getsitepackages(), sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    (site_packages / "_voxhear_test_deps.pth").write_text("".join(f"{p}\n" for p in ours if Path(p).is_dir()))
    return Installed(base, wheel, venv, site_packages)


def test_imports_come_from_the_wheel_not_the_checkout(installed):
    where = installed.python("import voxhear.pipeline, voxhear.stages.audio, voxhear.qc; "
                             "print(voxhear.pipeline.__file__, voxhear.stages.audio.__file__, voxhear.qc.__file__)")
    for path in where.split():
        assert Path(path).is_relative_to(installed.site_packages), where


def test_every_data_file_of_the_packages_is_in_the_wheel_and_the_sample_is_not(installed):
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    package_dirs = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    expected = set()
    for package, folder in package_dirs.items():
        for path in (REPO / folder).rglob("*"):
            if path.is_file() and path.suffix not in (".py", ".pyc") and "__pycache__" not in path.parts:
                expected.add("/".join([*package.split("."), *path.relative_to(REPO / folder).parts]))
    assert expected, "no package data found: the layout changed, update this test"
    assert expected <= names, f"package data missing from the wheel (pyproject package-data): {expected - names}"
    assert not [n for n in names if n.startswith(("sample/", "tests/", "voxhear/sample/"))]


def test_models_list(installed):
    require_shared(SHARED_MODELS / "MODELS.tsv", "the shared model store")
    out = installed.voxhear("models", "list").stdout.splitlines()
    from voxhear.pipeline.models import load_registry

    listed = {line.split()[0]: line.split()[1] for line in out}
    assert set(listed) == set(load_registry()), out
    assert set(listed.values()) == {"found"}, out


def test_config_has_no_inputs_without_the_bundled_sample(installed, capsys):
    config = yaml.safe_load(installed.voxhear("config", "shards.max_samples=7").stdout)
    assert config["inputs"] == [] and config["shards"]["max_samples"] == 7 and "faces" in config
    # The same code in this process (each run of the installed command costs seconds of imports):
    # only `inputs` may be empty for `config` and `models`; every other key is still checked.
    from voxhear.pipeline.cli import main

    assert main(["config", "inputs=[]", "runner=spark"]) == 2
    assert "config key 'runner' must be one of" in capsys.readouterr().err
    assert main(["config", "inputs=[a.mp4]"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["inputs"] == ["a.mp4"]


def test_run_without_inputs_names_the_key(installed):
    run_dir = installed.base / "run"
    result = installed.voxhear("run", "--run-dir", run_dir, check=False)
    assert result.returncode == 2, result.stderr
    assert "config key 'inputs' needs at least 1 item" in result.stderr
    assert not run_dir.exists()


def test_datasheet(installed):
    run = build_run(installed.base / "qc" / "run", installed.base / "qc" / "media")
    result = installed.voxhear("datasheet", run)
    assert f"wrote {run / 'datasheet.md'}" in result.stdout
    text = (run / "datasheet.md").read_text()
    assert "Which models produced the labels?" in text and "| model | file |" in text
    assert (run / "croissant.json").is_file()
