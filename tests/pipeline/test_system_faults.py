"""Faults of the machine or the installation stop the run and leave the input uncommitted; they
never become `failed` rows that a rerun would skip."""

import errno
import subprocess

import pyarrow.parquet as pq
import pytest
import ray

from tests.conftest import SHOT_STAGES, make_video
from tests.pipeline.test_apply_stage import ShotStage, raising, shots, source
from voxhear.pipeline.cli import main
from voxhear.pipeline.config import ConfigError, load_config
from voxhear.pipeline.records import STATUS_FAILED
from voxhear.pipeline.stage import FATAL_ERRORS, InputError, SystemFault, apply_stage
from voxhear.stages import media


@pytest.mark.parametrize("number", [errno.ENOSPC, errno.EDQUOT, errno.EROFS])
@pytest.mark.parametrize("batch", [1, 3])
def test_a_full_or_read_only_disk_stops_the_run(number, batch):
    def behaviour(row):
        try:
            raise OSError(number, "disk", "/run/work/x.mp4")
        except OSError as error:  # wrapped by a stage: the cause chain is searched
            raise RuntimeError("could not write the shot") from error

    with pytest.raises(SystemFault, match=r"stage fake: .*/run/work/x.mp4.*uncommitted"):
        apply_stage(ShotStage(behaviour), [source(f"{i}.mp4") for i in range(batch)])


def test_a_missing_program_stops_the_run_but_a_missing_data_file_is_a_data_error():
    def run_missing_program(row):
        subprocess.run(["voxhear-no-such-program", row.source_uri], check=True)

    with pytest.raises(SystemFault, match="cannot run voxhear-no-such-program"):
        apply_stage(ShotStage(run_missing_program), [source()])

    def open_missing_file(row):
        open("/nonexistent/voxhear/input.mp4", "rb")

    (row,) = apply_stage(ShotStage(open_missing_file), [source()])
    assert row.status == STATUS_FAILED and row.reason == "FileNotFoundError"


@pytest.mark.parametrize("error", [SystemExit(3), KeyboardInterrupt()], ids=lambda e: type(e).__name__)
def test_system_exit_and_keyboard_interrupt_are_never_swallowed(error):
    assert issubclass(SystemFault, FATAL_ERRORS) and issubclass(SystemExit, FATAL_ERRORS)
    for rows in ([source()], [source("a.mp4"), source("b.mp4")]):
        with pytest.raises(type(error)):
            apply_stage(ShotStage(raising(error)), rows)

    def in_retry(row):  # raised only in the row-by-row retry after a data error
        if row.source_uri == "bad.mp4":
            raise ValueError("data")
        if len(stage.batches) > 1:
            raise error
        return shots(1)(row)

    stage = ShotStage(in_retry)
    with pytest.raises(type(error)):
        apply_stage(stage, [source("bad.mp4"), source("b.mp4")])


def test_tool_results_are_sorted_into_data_errors_and_system_faults():
    with pytest.raises(SystemFault, match="killed by SIGKILL"):
        media.run_tool(["sh", "-c", "kill -KILL $$"], 10, "in.mp4")
    with pytest.raises(InputError, match="crashed with SIGSEGV") as crashed:
        media.run_tool(["sh", "-c", "kill -SEGV $$"], 10, "in.mp4")
    assert crashed.value.reason == "tool_crashed"
    with pytest.raises(SystemFault, match="No space left on device"):
        media.run_tool(["sh", "-c", "echo 'out.mp4: No space left on device' >&2; exit 1"], 10, "in.mp4")
    with pytest.raises(SystemFault, match="not installed or not on PATH"):
        media.run_tool(["voxhear-no-such-ffmpeg"], 10, "in.mp4")
    with pytest.raises(InputError, match="did not finish within") as timed_out:
        media.run_tool(["sleep", "30"], 0.3, "in.mp4")
    assert timed_out.value.reason == "timeout"
    assert media.run_tool(["sh", "-c", "echo bad input >&2; exit 1"], 10, "in.mp4").returncode == 1


@pytest.mark.parametrize("key", ["ingest.x264_preset", "shot_media.x264_preset", "faces.crop_preset"])
def test_a_mistyped_x264_preset_is_refused_before_the_run(key):
    with pytest.raises(ConfigError, match=rf"'{key}' must be one of .*'veryfast'"):
        load_config(None, ["inputs=[x.mp4]", f"{key}=veryfastt"])
    assert load_config(None, ["inputs=[x.mp4]", f"{key}=medium"])


@pytest.mark.parametrize("runner", ["local", pytest.param("ray", marks=pytest.mark.slow)])
def test_without_ffmpeg_the_run_stops_and_the_input_stays_uncommitted(tmp_path, monkeypatch, capsys, runner):
    video = make_video(tmp_path / "in" / "a.mp4", seconds=1.5)
    run_dir = tmp_path / "run"
    command = ["run", str(video), "--run-dir", str(run_dir), "--quiet", "ray.num_cpus=2", SHOT_STAGES]
    empty = tmp_path / "empty-path"
    empty.mkdir()
    ray.shutdown()  # Ray's workers get the PATH of the driver that starts Ray
    with monkeypatch.context() as patch:
        patch.setenv("PATH", str(empty))
        try:
            code = main([*command, "--runner", runner])
        finally:
            ray.shutdown()
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 1, lines
    # One line of its own (Ray may log before it).
    assert lines[-1] == "voxhear: error: ffprobe is not installed or not on PATH: install ffmpeg (with ffprobe)"
    assert runner == "ray" or len(lines) == 1, lines
    assert list((run_dir / "manifests" / "_ledger").glob("*-sources.parquet")) == []
    assert pq.read_table(run_dir / "manifests" / "sources.parquet").num_rows == 0

    assert main([*command, "--runner", "local"]) == 0  # ffmpeg back: processed, not skipped as failed
    rows = pq.read_table(run_dir / "manifests" / "sources.parquet").to_pylist()
    assert [(r["source_uri"], r["status"]) for r in rows] == [(str(video), "ok")]


@pytest.mark.parametrize(
    "message",
    ["CUDA error: an illegal memory access was encountered", "cuDNN error: CUDNN_STATUS_INTERNAL_ERROR",
     "CUDA driver version is insufficient for CUDA runtime version", "NCCL error in: unhandled system error"],
)
def test_an_accelerator_fault_stops_the_run_but_a_data_runtime_error_is_a_row(message):
    with pytest.raises(RuntimeError, match=message.split(":")[0]):
        apply_stage(ShotStage(raising(RuntimeError(message))), [source()])
    (row,) = apply_stage(ShotStage(raising(RuntimeError("shape mismatch in the input's audio"))), [source()])
    assert row.status == STATUS_FAILED and row.reason == "RuntimeError"
