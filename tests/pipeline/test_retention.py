"""The work area is not kept by default: an input's intermediates go right after its commit, a run's
start clears what killed attempts left, `keep_work` keeps everything, and the summary says the size."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

import fsspec
import pyarrow.parquet as pq
import pytest

from tests.conftest import make_video
from voxhear.manifests import Ledger
from voxhear.manifests.verify import verify_run
from voxhear.pipeline import sink as sink_module
from voxhear.pipeline import workarea
from voxhear.pipeline.cli import main
from voxhear.pipeline.config import load_config
from voxhear.pipeline.records import STATUS_FAILED, ShotRecord, sample_key
from voxhear.pipeline.runner import run_pipeline
from voxhear.pipeline.sink import DatasetSink


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("retention")
    return [make_video(folder / "a.mp4", seconds=1.2), make_video(folder / "b.mp4", seconds=2.0, cuts=2)]


def _sources(run_dir: Path) -> list[dict]:
    return pq.read_table(run_dir / "manifests" / "sources.parquet").to_pylist()


def _sample_keys(run_dir: Path) -> set[str]:
    keys = set()
    for shard in (run_dir / "shards").glob("*.tar"):
        with tarfile.open(shard) as tar:
            keys |= {name.split(".", 1)[0] for name in tar.getnames()}
    return keys


def _ok_keys(run_dir: Path) -> set[str]:
    clips = pq.read_table(run_dir / "manifests" / "clips.parquet").to_pylist()
    return {c["key"] for c in clips if c["status"] == "ok"}


def test_committed_inputs_leave_no_work_files_and_their_samples_are_intact(videos, run_config, capsys):
    config = run_config([str(v) for v in videos], "shards.max_samples=1")
    assert config.keep_work is False
    summary = run_pipeline(config, show_progress=False)
    sources = _sources(summary.run_dir)
    assert [r["status"] for r in sources] == ["ok", "ok"]
    work = summary.run_dir / "work"
    assert not any((work / r["source_id"]).exists() for r in sources)
    assert summary.work_bytes == workarea.size_bytes(work) == 0
    assert _sample_keys(summary.run_dir) == _ok_keys(summary.run_dir) and len(_ok_keys(summary.run_dir)) == 3
    assert verify_run(summary.run_dir).ok
    # The CLI prints the size; a resume finds nothing to redo and nothing to clean.
    assert main(["run", *map(str, videos), "--run-dir", str(summary.run_dir), "--runner", "local",
                 "--quiet", "stages=[ingest, scene_cut, shot_media]", "shards.max_samples=1"]) == 0
    out = capsys.readouterr().out
    assert "inputs: 2 (2 already done" in out and "work area: 0 B in " in out


def test_keep_work_keeps_every_input_s_files_and_reports_their_size(videos, run_config, capsys):
    summary = run_pipeline(run_config([str(v) for v in videos], "keep_work=true"), show_progress=False)
    work = summary.run_dir / "work"
    for row in _sources(summary.run_dir):
        assert any((work / row["source_id"]).rglob("*.mp4"))
    assert summary.work_bytes == workarea.size_bytes(work) > 0
    assert f"work area: {workarea.format_size(summary.work_bytes)} in {work} (keep_work: kept)" in summary.format()
    # `--keep-work` is the same setting.
    assert main(["run", str(videos[0]), "--run-dir", str(summary.run_dir), "--runner", "local", "--keep-work",
                 "--quiet", "stages=[ingest, scene_cut, shot_media]"]) == 0
    assert "(keep_work: kept)" in capsys.readouterr().out
    assert workarea.size_bytes(work) == summary.work_bytes


def test_work_files_are_removed_only_after_the_commit_that_records_the_input(videos, run_config, monkeypatch):
    seen: list[tuple[str, bool, bool]] = []
    real = sink_module.remove_input_work

    def checking(work: Path, source_id: str, source_uri: str) -> None:
        ledger = work.parent / "manifests" / "_ledger"
        committed = any(source_uri in pq.read_table(p).column("source_uri").to_pylist()
                        for p in ledger.glob("*-sources.parquet"))
        seen.append((source_uri, committed, (work / source_id).is_dir()))
        real(work, source_id, source_uri)

    monkeypatch.setattr(sink_module, "remove_input_work", checking)
    run_pipeline(run_config([str(v) for v in videos]), show_progress=False)
    assert sorted(seen) == [(str(v), True, True) for v in videos]


def test_a_crash_between_commit_and_removal_leaves_files_the_next_start_removes(videos, run_config, monkeypatch):
    def crash(work: Path, source_id: str, source_uri: str) -> None:
        raise KeyboardInterrupt  # killed right after the commit

    monkeypatch.setattr(sink_module, "remove_input_work", crash)
    config = run_config([str(videos[0])])
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(config, show_progress=False)
    monkeypatch.undo()
    run_dir = Path(config.run_dir)
    (row,) = [r for p in (run_dir / "manifests" / "_ledger").glob("*-sources.parquet")
              for r in pq.read_table(p).to_pylist()]
    work = run_dir / "work"
    assert row["status"] == "ok" and (work / row["source_id"]).is_dir()  # committed, files still there
    keys = _sample_keys(run_dir)
    stale = work / "0123456789abcdef" / f".video.mp4.{os.urandom(4).hex()}.tmp"  # a killed attempt's temp
    stale.parent.mkdir()
    stale.write_bytes(b"half")
    again = run_pipeline(config, show_progress=False)
    assert (again.inputs, again.skipped) == (1, 1)
    assert not work.exists() or not any(work.iterdir())
    assert _sample_keys(run_dir) == keys and verify_run(run_dir).ok


def test_the_start_keeps_only_remote_copies_still_to_do(tmp_path):
    work = tmp_path / "work"
    todo, done = "s3://bucket/todo.mp4", "s3://bucket/done.mp4"
    for uri in (todo, done):
        path = workarea.fetched_path(work, uri)
        path.parent.mkdir(parents=True)
        path.write_bytes(b"video")
    temp = workarea.fetched_path(work, todo).with_name(".todo.mp4.0badf00d.tmp")
    temp.write_bytes(b"half a copy")
    (work / "abcdef0123456789" / "shots").mkdir(parents=True)
    (work / "abcdef0123456789" / "shots" / "0.mp4").write_bytes(b"shot")

    workarea.clean_at_start(work, keep_work=True, remote_todo=[todo])
    assert not temp.exists() and (work / "abcdef0123456789" / "shots" / "0.mp4").exists()
    workarea.clean_at_start(work, keep_work=False, remote_todo=[todo])
    assert [p.relative_to(work) for p in sorted(work.rglob("*")) if p.is_file()] == [
        workarea.fetched_path(work, todo).relative_to(work)
    ]


def test_a_fetched_remote_copy_goes_with_its_input(tmp_path, videos, run_config):
    fs = fsspec.filesystem("memory")
    uri = "memory:///voxhear-retention/remote.mp4"
    fs.pipe(uri.removeprefix("memory://"), videos[0].read_bytes())
    try:
        kept = run_pipeline(run_config([uri], "keep_work=true"), show_progress=False)
        copy = workarea.fetched_path(kept.run_dir / "work", uri)
        assert copy.read_bytes() == videos[0].read_bytes()  # where ingest puts it
        os.rename(kept.run_dir, tmp_path / "kept")
        summary = run_pipeline(run_config([uri]), show_progress=False)
    finally:
        fs.rm(uri.removeprefix("memory://"))
    assert [r["status"] for r in _sources(summary.run_dir)] == ["ok"]
    assert not workarea.fetched_path(summary.run_dir / "work", uri).parent.exists()


def test_a_second_copy_that_lost_its_work_files_is_a_duplicate_not_a_failure(tmp_path):
    """Two copies of one video share `work/<source_id>`: the first one's commit may remove it while
    the second is still processed (Ray), which then fails; it is recorded as the duplicate it is."""
    media = tmp_path / "media"
    media.mkdir()
    config = load_config(None, ["runner=local", "stages=[ingest, scene_cut, shot_media]", "shards.max_samples=1"])
    ledger = Ledger(tmp_path / "run")
    sink = DatasetSink(config, ledger, ledger.recover(), final_type=ShotRecord, total_sources=2,
                       show_progress=False)
    key = sample_key("same", 0)
    (media / "v.mp4").write_bytes(b"mp4")
    (media / "a.flac").write_bytes(b"flac")
    first = ShotRecord(source_uri="/in/a.mp4", source_id="same", shot_index=0, key=key, share_den=1,
                       start_s=0.0, end_s=1.0, segment_video_uri=str(media / "v.mp4"),
                       segment_audio_uri=str(media / "a.flac"))
    sink.consume([first])
    second = ShotRecord(source_uri="/in/copy.mp4", source_id="same", share_den=1)
    second.mark(STATUS_FAILED, "scene_cut", "FileNotFoundError", "FileNotFoundError", "video.mp4 is gone")
    sink.consume([second])
    sink.finish()
    rows = {r["source_uri"]: r for r in _consolidated_sources(tmp_path / "run")}
    assert (rows["/in/a.mp4"]["status"], rows["/in/copy.mp4"]["status"]) == ("ok", "filtered")
    assert rows["/in/copy.mp4"]["reason"] == "duplicate_content" and sink.failed == 0


def _consolidated_sources(run_dir: Path) -> list[dict]:
    from voxhear.manifests import consolidate

    sources, _ = consolidate(run_dir)
    return sources.to_pylist()
