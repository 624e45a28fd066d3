"""Every ffmpeg call of the face and talk stages runs under a time limit: the clip cutting through
`media.run_tool`, the face crop writer (a streaming Popen) under a watchdog that kills a hung encoder."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from tests.conftest import require_shared
from tests.stages.faces.conftest import model_store  # noqa: F401 - the shared store fixture
from voxhear.benchmarks.synth import SynthOptions, compose_dataset
from voxhear.benchmarks.synth.options import default_media_dir
from voxhear.pipeline.registry import stage_names
from voxhear.pipeline.runner import run_pipeline
from voxhear.pipeline.stage import InputError
from voxhear.stages import media
from voxhear.stages.faces import crop
from voxhear.stages.faces.crop import CropVideoWriter

# A stand-in for ffmpeg that hangs: it never reads its input, or reads all of it and never ends.
NEVER_READS = (sys.executable, "-c", "import time; time.sleep(600)")
NEVER_ENDS = (sys.executable, "-c", "import sys, time; sys.stdin.buffer.read(); time.sleep(600)")


@pytest.fixture
def quick_watchdog(monkeypatch):
    monkeypatch.setattr(crop, "WRITE_TIMEOUT_S", 1.0)
    monkeypatch.setattr(crop, "WATCH_EVERY_S", 0.05)


@pytest.mark.timeout(60)
def test_a_crop_encoder_that_stops_reading_is_killed(tmp_path, monkeypatch, quick_watchdog):
    monkeypatch.setattr(crop, "FFMPEG", NEVER_READS)
    writer = CropVideoWriter(tmp_path / "crop.mp4", 64, 25.0)
    started = time.monotonic()
    frame = np.zeros((64, 64, 3), np.uint8)
    with pytest.raises(InputError) as caught:
        for _ in range(10_000):  # far more than a pipe holds
            writer.write(frame)
    assert caught.value.reason == "timeout" and time.monotonic() - started < 20
    assert writer.process.poll() is not None  # killed, not left behind
    writer.abort()  # what the face stage's clean-up does next: harmless


@pytest.mark.timeout(60)
def test_a_crop_encoder_that_never_finishes_is_killed_on_close(tmp_path, monkeypatch, quick_watchdog):
    monkeypatch.setattr(crop, "FFMPEG", NEVER_ENDS)
    monkeypatch.setattr(crop, "tool_timeout", lambda duration_s: 1.0)
    writer = CropVideoWriter(tmp_path / "crop.mp4", 64, 25.0)
    for _ in range(5):
        writer.write(np.zeros((64, 64, 3), np.uint8))
    started = time.monotonic()
    with pytest.raises(InputError) as caught:
        writer.close()
    assert caught.value.reason == "timeout" and time.monotonic() - started < 20
    assert writer.process.poll() is not None


@pytest.mark.slow
def test_every_ffmpeg_call_of_faces_and_talk_has_a_time_limit(tmp_path, run_config, model_store, monkeypatch):
    media_dir = default_media_dir()
    require_shared(media_dir / "faces-grid", "the shared GRID face clips")
    synth = tmp_path / "synth"
    compose_dataset(SynthOptions(out_dir=synth, media_dir=media_dir, videos=1, duration_s=12.0, width=480,
                                 height=270, shots=2, min_shot_s=4.0, two_shot_prob=0.0, seed=7))
    calls: list[tuple[str, str, float | None]] = []
    inside_run: list[bool] = []
    popened: list[int] = []
    watched: list[int] = []
    real_run, real_popen, real_watchdog = subprocess.run, subprocess.Popen, crop.Watchdog

    def caller() -> str | None:  # the face crop writer or the talk stage (not a library probing for ffmpeg)
        files = [Path(f.filename) for f in traceback.extract_stack()]
        if any(f.name == "crop.py" and f.parent.name == "faces" for f in files):
            return "faces"
        if any(f.name == "stage.py" and f.parent.name == "talk" for f in files):
            return "talk"
        return None

    def recording_run(command, *args, **kwargs):
        if (who := caller()) is not None:
            calls.append((who, os.path.basename(command[0]), kwargs.get("timeout")))
        inside_run.append(True)
        try:
            return real_run(command, *args, **kwargs)
        finally:
            inside_run.pop()

    def recording_popen(command, *args, **kwargs):  # started without subprocess.run: only a watchdog limits it
        process = real_popen(command, *args, **kwargs)
        if not inside_run and (who := caller()) is not None:
            calls.append((who, os.path.basename(command[0]), None))
            popened.append(process.pid)
        return process

    def recording_watchdog(process):
        watched.append(process.pid)
        return real_watchdog(process)

    monkeypatch.setattr(subprocess, "run", recording_run)
    monkeypatch.setattr(subprocess, "Popen", recording_popen)
    monkeypatch.setattr(crop, "Watchdog", recording_watchdog)
    stages = "stages=[" + ", ".join(stage_names()) + "]"
    # Clips shorter than the tracks, so that the talk stage cuts clip videos out of the crops.
    config = run_config([str(synth / "videos")], stages, f"models.dir={model_store.store_dir}",
                        "talk.min_clip_s=1.0", "talk.max_clip_s=2.5")
    summary = run_pipeline(config, show_progress=False)
    monkeypatch.undo()
    clips = pq.read_table(summary.run_dir / "manifests" / "clips.parquet").to_pylist()
    assert summary.status_counts == {"ok": 1}, [c["error_message"] for c in clips if c["status"] == "failed"]
    faces = [tool for who, tool, _ in calls if who == "faces"]
    talk = [(tool, limit) for who, tool, limit in calls if who == "talk" and tool in ("ffmpeg", "ffprobe")]
    assert faces and set(faces) == {"ffmpeg"} and sorted(popened) == sorted(watched), (calls, popened, watched)
    assert talk and all(limit is not None for _, limit in talk), talk
    kept = [c for c in clips if c["status"] == "ok" and c["clip_index"] >= 0]
    track = max(kept, key=lambda c: c["track_end_s"] - c["track_start_s"])
    assert ("ffmpeg", media.tool_timeout(track["track_end_s"] - track["track_start_s"])) in talk
