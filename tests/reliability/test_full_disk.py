"""A run whose run directory is on a filesystem that fills up: it stops at once with one message
naming that filesystem, exits non-zero, commits no `failed` row for the disk, and once the disk is
bigger the rerun ends with exactly the samples of an uninterrupted run.

The filesystem is a real tmpfs of a fraction of what the run needs, so the disk fills wherever it
happens to: in a stage's ffmpeg (a worker's SystemFault), in a shard, in a ledger part. It needs
root (mount); CI runs as root, elsewhere the test is skipped saying so. How the messages name the
disk is also checked without root, with the errors raised by hand.
"""

from __future__ import annotations

import errno
import subprocess
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.pipeline.test_apply_stage import ShotStage, source
from tests.reliability.conftest import MEDIA_SETTINGS
from tests.reliability.harness import assert_same_samples
from voxhear.pipeline import io
from voxhear.pipeline.cli import main
from voxhear.pipeline.models import ModelStore
from voxhear.pipeline.shards import ShardWriter
from voxhear.pipeline.stage import RunContext, SystemFault, apply_stage, system_oserror


def mount_tmpfs(folder: Path, kib: int, remount: bool = False) -> None:
    options = f"remount,size={kib}k" if remount else f"size={kib}k"
    command = ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)]
    subprocess.run(command, check=True, capture_output=True, text=True)


@pytest.fixture
def small_disk(tmp_path):
    """A folder to mount a tmpfs on; unmounted after the test."""
    folder = tmp_path / "disk"
    folder.mkdir()
    try:
        mount_tmpfs(folder, 64)
    except (OSError, subprocess.CalledProcessError) as error:
        detail = getattr(error, "stderr", "") or error
        pytest.skip(f"cannot mount a tmpfs here (needs root and mount permission, as CI has): {detail}".strip())
    subprocess.run(["umount", str(folder)], check=True)
    yield folder
    subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def used_kib(run_dir: Path) -> int:
    return int(
        subprocess.run(["du", "-sk", str(run_dir)], check=True, capture_output=True, text=True).stdout.split()[0]
    )


def committed_rows(run_dir: Path) -> list[dict]:
    ledger = run_dir / "manifests" / "_ledger"
    parts = sorted(ledger.glob("*-sources.parquet")) if ledger.is_dir() else []
    return [row for part in parts for row in pq.read_table(part).to_pylist()]


@pytest.mark.slow
@pytest.mark.parametrize("share", [0.05, 0.4, 0.7])
def test_a_full_disk_stops_the_run_naming_it_and_the_rerun_completes(
    media_inputs, media_reference, small_disk, capsys, share
):
    mount_tmpfs(small_disk, max(16, int(used_kib(media_reference) * share)))
    run_dir = small_disk / "run"
    command = ["run", str(media_inputs), "--run-dir", str(run_dir), "--runner", "local", "--quiet", *MEDIA_SETTINGS]

    code = main(command)
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 1, lines
    message = lines[-1]
    assert message.startswith("voxhear: error: ") and "No space left on device" in message, lines
    assert f"on the filesystem mounted at {small_disk} (" in message, message  # the disk, named
    assert str(run_dir) in message  # with the file, or the work area, that did not fit
    rows = committed_rows(run_dir)
    assert [(Path(r["source_uri"]).name, r["reason"]) for r in rows if r["status"] == "failed"] in (
        [],
        [("b_broken.mp4", "probe_failed")],
    )  # only the broken input's own failure
    assert len(rows) < 3  # the run stopped: some input is left uncommitted

    mount_tmpfs(small_disk, 64 * 1024, remount=True)  # the disk made bigger: same files, more room
    assert main(command) == 0
    summary = capsys.readouterr().out
    assert f"({len(rows)} already done in an earlier attempt)" in summary
    assert_same_samples(run_dir, media_reference, media=False)


def test_every_way_a_full_disk_surfaces_names_the_filesystem(tmp_path, monkeypatch):
    """Without root: the three places a full disk shows up, each made to fail by hand."""
    where = "No space left on device on the filesystem mounted at "

    def full(*args, **kwargs):  # as pyarrow says it: no file, no filesystem
        raise OSError(errno.ENOSPC, "Error writing bytes to file. Detail: [errno 28] No space left on device")

    # A ledger part or manifest (atomic_write_table): named, still an OSError of the machine, no temp left.
    target = tmp_path / "run" / "manifests" / "_ledger" / "000000-clips.parquet"
    with monkeypatch.context() as patch:
        patch.setattr(pq, "write_table", full)
        with pytest.raises(OSError) as caught:
            io.atomic_write_table(target, pa.table({"key": ["k"]}))
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(target)
    assert where in str(caught.value) and system_oserror(caught.value) is caught.value
    assert list(target.parent.iterdir()) == []

    # A shard being written by the sink.
    writer = ShardWriter(tmp_path / "run" / "shards", max_samples=10, max_bytes=10**9)
    writer.add("k0", {"json": b"{}"})
    with monkeypatch.context() as patch:
        patch.setattr(writer._current.handle, "write", full)
        with pytest.raises(OSError) as caught:
            writer.add("k1", {"json": b"{}" * 4096})
    assert caught.value.errno == errno.ENOSPC and where in str(caught.value)
    assert caught.value.filename.startswith(str(tmp_path / "run" / "shards" / ".000000.tar."))

    # A stage's tool that says so in its stderr (a worker's SystemFault): the work area's disk is named.
    def tool_failed(row):
        raise SystemFault(
            f"ffmpeg failed for a reason that is not the input's ({row.source_uri}): No space left on device"
        )

    stage = ShotStage(tool_failed)
    stage.context = RunContext(run_dir=tmp_path / "run", model_store=ModelStore())
    with pytest.raises(SystemFault) as fault:
        apply_stage(stage, [source("a.mp4")])
    assert str(fault.value).startswith("ffmpeg failed for a reason that is not the input's (a.mp4): No space left")
    assert f"; the work area {tmp_path}/run/work is on the filesystem mounted at /" in str(fault.value)
