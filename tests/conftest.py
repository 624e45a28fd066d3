"""Shared fixtures: small real videos generated with ffmpeg's test sources."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from voxhear.pipeline.config import load_config

# The foundation's tests use ffmpeg test patterns (no faces, no speech): they stop after the shot
# stages, which write one sample per shot.
SHOT_STAGES = "stages=[ingest, scene_cut, shot_media]"
# The offline model store and media beside the checkout (../shared, as in CI).
SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SHARED_MODELS = SHARED / "models"
REQUIRE_SHARED_ENV = "VOXHEAR_REQUIRE_SHARED"


def shared_assets_required() -> bool:
    """Whether a missing shared asset fails a test instead of skipping it: in CI (CI set, as CI
    services do; .ci/run checks the assets up front) or with VOXHEAR_REQUIRE_SHARED=1."""
    ci = os.environ.get("CI", "").strip().lower()
    return ci not in ("", "0", "false", "no") or os.environ.get(REQUIRE_SHARED_ENV, "") == "1"


def require_shared(path: Path, what: str) -> None:
    """Skip the running test when the shared asset `path` is missing, or fail it where required.

    The one place tests that use ../shared (models or media) decide what a missing asset means:
    a skip on a developer machine without it, a failure in CI, so that CI never passes green
    with the assets missing. Call it in a test or fixture, or mark a test with `needs_shared`.
    """
    if Path(path).exists():
        return
    message = f"{what} not found at {path}"
    if shared_assets_required():
        pytest.fail(f"{message}: the shared assets are required here (CI or {REQUIRE_SHARED_ENV}=1); "
                    "put the shared folder (models/, media/) beside the checkout", pytrace=False)
    pytest.skip(f"{message} (skipped; CI or {REQUIRE_SHARED_ENV}=1 fail instead)")


def needs_shared(path: Path, what: str) -> pytest.MarkDecorator:
    """A mark (on a test or a module's `pytestmark`): `require_shared(path, what)` before the test runs."""
    return pytest.mark.shared(path=Path(path), what=what)


def pytest_runtest_setup(item: pytest.Item) -> None:
    for mark in item.iter_markers("shared"):
        require_shared(mark.kwargs["path"], mark.kwargs["what"])


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", *args], check=True)


def make_video(path: Path, seconds: float = 2.0, size: str = "160x120", fps: str = "25",
               cuts: int = 1, audio: str | None = "sine", video: bool = True) -> Path:
    """A video of `cuts` visually different segments (real hard cuts) with a tone or silence.

    Args:
        audio: "sine" for a tone, "silence" for digital silence, None for no audio stream.
    """
    sources = ["testsrc", "mandelbrot", "smptebars", "rgbtestsrc"]
    args: list[str] = []
    if video:
        seg = seconds / cuts
        for i in range(cuts):
            args += ["-t", f"{seg}", "-f", "lavfi", "-i", f"{sources[i % len(sources)]}=size={size}:rate={fps}"]
    if audio == "sine":
        args += ["-f", "lavfi", "-i", f"sine=frequency=330:sample_rate=44100:duration={seconds}"]
    elif audio == "silence":
        args += ["-f", "lavfi", "-i", f"anullsrc=r=44100:cl=mono:d={seconds}"]
    maps: list[str] = []
    if video:
        chain = "".join(f"[{i}:v]" for i in range(cuts))
        args += ["-filter_complex", f"{chain}concat=n={cuts}:v=1:a=0[v]"]
        maps += ["-map", "[v]", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]
    if audio:
        maps += ["-map", f"{cuts if video else 0}:a", "-c:a", "aac", "-t", str(seconds)]
    path.parent.mkdir(parents=True, exist_ok=True)
    ffmpeg(*args, *maps, str(path))
    return path


@pytest.fixture(scope="session")
def good_videos(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("good")
    return [make_video(folder / "two_cuts.mp4", seconds=4.0, cuts=2),
            make_video(folder / "one_shot.mkv", seconds=2.0, cuts=1, size="200x150", fps="30")]


@pytest.fixture
def run_config(tmp_path):
    """A config factory writing into tmp_path/run with test-friendly settings."""

    def factory(inputs, *overrides: str, runner: str = "local"):
        listed = "[" + ",".join(f"'{p}'" for p in inputs) + "]"
        return load_config(None, [f"inputs={listed}", f"run_dir={tmp_path / 'run'}", f"runner={runner}",
                                  "ray.num_cpus=2", SHOT_STAGES, *overrides])

    return factory


@pytest.fixture(autouse=True, scope="session")
def _offline():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("VOXHEAR_OFFLINE", "1")
