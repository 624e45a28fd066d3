"""The sample index (manifests/samples.parquet): every sample's byte span in its shard and its split,
so that one split is read without the others' bytes. Stand-in stages (tests/reliability/fakes.py)
with the real sink, passes and index."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.reliability.fakes import TALK, synthetic_video, use_synthetic_stages
from voxhear.dataset.loader import VoxHearWindows, split_spans, tar_samples
from voxhear.manifests.sample_index import INDEX_FILE, SAMPLES_SCHEMA, write_sample_index
from voxhear.manifests.verify import verify_run
from voxhear.pipeline.cli import main
from voxhear.pipeline.config import load_config
from voxhear.pipeline.runner import run_pipeline


@pytest.fixture
def run_dir(tmp_path, monkeypatch) -> Path:
    use_synthetic_stages(monkeypatch)
    folder = tmp_path / "inputs"
    for name, identity, shots in (("a", 0, 3), ("c", 1, 2), ("d", 2, 2)):
        synthetic_video(folder / f"{name}.mp4", shots=shots, identity=identity)
    run_dir = tmp_path / "run"
    settings = [f"inputs=[{folder}]", f"run_dir={run_dir}", "runner=local", "shards.max_samples=2", TALK]
    run_pipeline(load_config(None, settings), show_progress=False)
    return run_dir


def members_in_shard(path: Path) -> dict[str, dict[str, bytes]]:
    out: dict[str, dict[str, bytes]] = {}
    with tarfile.open(path) as tar:
        for info in tar.getmembers():
            key, _, ext = info.name.partition(".")
            out.setdefault(key, {})[ext] = tar.extractfile(info).read()
    return out


def test_every_span_holds_exactly_its_sample_and_the_split_is_the_manifests(run_dir):
    index = pq.read_table(run_dir / "manifests" / INDEX_FILE, schema=SAMPLES_SCHEMA).to_pylist()
    clips = {r["key"]: r for r in pq.read_table(run_dir / "manifests" / "clips.parquet").to_pylist()}
    kept = {k for k, r in clips.items() if r["status"] == "ok"}
    assert {r["key"] for r in index} == kept
    assert {r["split"] for r in index} == {"train", "val", "test"}
    for row in index:
        shard = run_dir / "shards" / row["shard"]
        data = shard.read_bytes()[row["offset"] : row["offset"] + row["length"]]
        with tarfile.open(fileobj=io.BytesIO(data), mode="r|") as tar:
            got = {info.name.partition(".")[2]: tar.extractfile(info).read() for info in tar}
        assert got == members_in_shard(shard)[row["key"]]
        assert (row["split"], row["identity_id"]) == (clips[row["key"]]["split"], clips[row["key"]]["identity_id"])
    assert verify_run(run_dir).ok


def test_a_split_is_read_from_its_spans_alone(run_dir):
    index = pq.read_table(run_dir / "manifests" / INDEX_FILE).to_pylist()
    for split in ("train", "val", "test"):
        spans = split_spans(run_dir, split)
        want = {r["key"] for r in index if r["split"] == split}
        assert sum(length for shard in spans.values() for _, length in shard) == sum(
            r["length"] for r in index if r["split"] == split
        )
        got = [s["__key__"] for s in tar_samples(({"url": url} for url in sorted(spans)), spans)]
        assert sorted(got) == sorted(want)  # each once, nothing of the other splits
    # The loader given the run directory takes the spans of its split.
    windows = VoxHearWindows(str(run_dir), split="val")
    assert windows.spans == split_spans(run_dir, "val")
    total = sum((run_dir / "shards" / r["shard"]).stat().st_size for r in {r["shard"]: r for r in index}.values())
    assert sum(length for shard in windows.spans.values() for _, length in shard) < total / 2


def test_verify_catches_a_stale_index_and_reindex_rewrites_it(run_dir):
    path = run_dir / "manifests" / INDEX_FILE
    table = pq.read_table(path)
    offsets = pa.array([o + 512 for o in table.column("offset").to_pylist()])
    shifted = table.set_column(table.schema.get_field_index("offset"), "offset", offsets)
    pq.write_table(shifted, path)
    problems = [p.what for p in verify_run(run_dir).problems]
    assert problems and all("samples.parquet gives bytes" in p and "--reindex" in p for p in problems)
    write_sample_index(run_dir)  # the shards are unchanged (same sha256): their rows are kept as they are
    assert not verify_run(run_dir).ok
    assert main(["verify", "--reindex", str(run_dir)]) == 0
    assert pq.read_table(path).equals(table)
