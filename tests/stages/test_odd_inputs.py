"""Inputs that are odd as files rather than as videos: a name that is not UTF-8, a named pipe;
and every ffmpeg/ffprobe call of ingest and shot_media runs under a time limit."""

import os
import shutil
import subprocess
import traceback
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import make_video
from voxhear.pipeline.inputs import canonical, local_path
from voxhear.pipeline.runner import run_pipeline
from voxhear.stages import media


def test_a_name_that_is_not_utf8_becomes_a_row_and_the_others_complete(tmp_path, run_config):
    folder = tmp_path / "in"
    good = [make_video(folder / f"good{i}.mp4", seconds=1.2 + 0.2 * i) for i in range(3)]
    odd = make_video(tmp_path / "odd.mp4", seconds=1.8)
    bad = os.fsencode(folder) + b"/bad\xff 50%.mp4"
    shutil.move(odd, os.fsdecode(bad))
    bad_uri = "file://" + os.fsdecode(os.fsencode(folder)) + "/bad%FF%2050%25.mp4"
    assert canonical(os.fsdecode(bad)) == bad_uri and os.fsencode(local_path(bad_uri)) == bad

    summary = run_pipeline(run_config([str(folder)]), show_progress=False)
    rows = pq.read_table(summary.run_dir / "manifests" / "sources.parquet").to_pylist()
    assert {r["source_uri"]: r["status"] for r in rows} == {**{str(p): "ok" for p in good}, bad_uri: "ok"}
    clips = pq.read_table(summary.run_dir / "manifests" / "clips.parquet").to_pylist()
    assert {c["source_uri"] for c in clips if c["status"] == "ok"} == {r["source_uri"] for r in rows}
    # The identity is stable: a rerun skips all four, also when a list file names them by their bytes.
    listed = tmp_path / "inputs.txt"
    listed.write_bytes(b"\n".join([*(os.fsencode(p) for p in good), bad]) + b"\n")
    again = run_pipeline(run_config([str(listed)]), show_progress=False)
    assert (again.inputs, again.skipped) == (4, 4)


@pytest.mark.timeout(120)
def test_a_named_pipe_is_a_failed_row_and_does_not_block(tmp_path, run_config):
    good = make_video(tmp_path / "good.mp4", seconds=1.5)
    fifo = tmp_path / "pipe.mp4"
    os.mkfifo(fifo)
    summary = run_pipeline(run_config([str(good), str(fifo)]), show_progress=False)
    rows = pq.read_table(summary.run_dir / "manifests" / "sources.parquet").to_pylist()
    got = {r["source_uri"]: (r["status"], r["stage"], r["reason"]) for r in rows}
    assert got == {str(good): ("ok", "", ""), str(fifo): ("failed", "ingest", "not_a_regular_file")}


def test_every_ffmpeg_call_of_ingest_and_shot_media_has_a_time_limit(tmp_path, run_config, monkeypatch):
    video = make_video(tmp_path / "a.mp4", seconds=3.0, cuts=2)
    calls, inside_run = [], []
    real_run, real_popen = subprocess.run, subprocess.Popen

    def ours():  # called from ingest or shot_media (not, say, a library probing for ffmpeg at import)
        return any(Path(f.filename).name in ("ingest.py", "shot_media.py") for f in traceback.extract_stack())

    def recording_run(command, *args, **kwargs):
        if ours():
            calls.append((os.path.basename(command[0]), kwargs.get("timeout")))
        inside_run.append(True)
        try:
            return real_run(command, *args, **kwargs)
        finally:
            inside_run.pop()

    def recording_popen(command, *args, **kwargs):  # started without subprocess.run: no limit
        if not inside_run and ours():
            calls.append((os.path.basename(command[0]), None))
        return real_popen(command, *args, **kwargs)

    monkeypatch.setattr(subprocess, "run", recording_run)
    monkeypatch.setattr(subprocess, "Popen", recording_popen)
    summary = run_pipeline(run_config([str(video)]), show_progress=False)
    monkeypatch.undo()
    assert summary.status_counts == {"ok": 1}
    tools = [(tool, limit) for tool, limit in calls if tool in ("ffmpeg", "ffprobe")]
    assert len(tools) >= 6 and all(limit is not None for _, limit in tools), tools
    assert ("ffmpeg", media.tool_timeout(3.0)) in tools and ("ffprobe", media.PROBE_TIMEOUT_S) in tools
