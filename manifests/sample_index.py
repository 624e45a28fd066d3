"""manifests/samples.parquet: where every published sample's bytes lie in its shard, with its split.

Splits are identity-disjoint and assigned after the whole run (passes/splits.py), so shards are
filled in arrival order and every shard mixes splits: reading the validation tenth by opening
shards still reads most of the dataset. The index gives each sample's byte span in its shard
(its members are consecutive tar entries, header to padded end), so a reader fetches just the
spans of the split it wants (`dataset.loader`, with ranged reads on object storage) and never
the other splits' bytes.

Written after the end-of-run passes (the last writers of shards) and after a takedown, from the
shards themselves: a shard whose sha256 in the ledger is unchanged since the last index keeps its
rows (the index records the sha256 it was read at), others are re-read (tar headers only).
`voxhear verify` checks the index against the shards.
"""

from __future__ import annotations

import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from voxhear.manifests.integrity import shard_records
from voxhear.pipeline.io import atomic_write_table

INDEX_FILE = "samples.parquet"
TAR_BLOCK = 512

SAMPLES_SCHEMA = pa.schema(
    [
        pa.field("key", pa.string(), nullable=False),
        pa.field("shard", pa.string(), nullable=False),
        pa.field("split", pa.string(), nullable=False),  # "" where the run assigns no splits
        pa.field("identity_id", pa.string(), nullable=False),
        pa.field("offset", pa.int64(), nullable=False),  # the sample's first tar header
        pa.field("length", pa.int64(), nullable=False),  # through its last member's padded data
        pa.field("shard_sha256", pa.string(), nullable=False),  # the shard these spans were read from
    ]
)


def sample_spans(path: Path) -> list[tuple[str, int, int]]:
    """(key, offset, length) of every sample in shard `path`, in shard order (headers only are read)."""
    spans: dict[str, list[int]] = {}
    with tarfile.open(path, mode="r:") as tar:
        for info in tar:
            key = info.name.partition(".")[0]
            end = info.offset_data + -(-info.size // TAR_BLOCK) * TAR_BLOCK
            span = spans.setdefault(key, [info.offset, end])
            if info.offset != span[1] and span[1] != end:
                raise ValueError(f"{path}: the members of sample {key} are not consecutive")
            span[1] = end
    return [(key, start, end - start) for key, (start, end) in spans.items()]


def kept_labels(clips_path: Path) -> dict[str, tuple[str, str]]:
    """key -> (split, identity_id) of the kept clips of clips.parquet ("" where a run has none)."""
    if not clips_path.is_file():
        return {}
    clips = pq.read_table(clips_path)
    columns = [c for c in ("key", "status", "split", "identity_id") if c in clips.column_names]
    rows = clips.select(columns).to_pylist()
    return {r["key"]: (r.get("split") or "", r.get("identity_id") or "") for r in rows if r["status"] == "ok"}


def write_sample_index(run_dir: Path, reuse: bool = True) -> pa.Table:
    """Write manifests/samples.parquet for the run's current shards; returns it.

    Args:
        reuse: keep the rows of a shard whose sha256 is the one the index was read at (False reads
            every shard's headers again: `voxhear verify --reindex`).
    """
    run_dir = Path(run_dir)
    manifests = run_dir / "manifests"
    path = manifests / INDEX_FILE
    labels = kept_labels(manifests / "clips.parquet")
    previous: dict[tuple[str, str], list[dict]] = {}
    old = pq.read_table(path, schema=SAMPLES_SCHEMA) if path.is_file() else None
    if old is not None:
        for row in old.to_pylist():
            previous.setdefault((row["shard"], row["shard_sha256"]), []).append(row)
    rows: list[dict] = []
    for name, record in sorted(shard_records(run_dir).items()):
        if record.removed or not (run_dir / "shards" / name).is_file():
            continue
        kept = previous.get((name, record.sha256)) if reuse else None
        spans = (
            [(r["key"], r["offset"], r["length"]) for r in kept]
            if kept is not None
            else sample_spans(run_dir / "shards" / name)
        )
        for key, offset, length in spans:
            split, identity = labels.get(key, ("", ""))
            rows.append(
                {
                    "key": key,
                    "shard": name,
                    "split": split,
                    "identity_id": identity,
                    "offset": offset,
                    "length": length,
                    "shard_sha256": record.sha256,
                }
            )
    table = pa.Table.from_pylist(rows, SAMPLES_SCHEMA)
    if old is None or not old.equals(table):  # unchanged: not rewritten (nor published again)
        atomic_write_table(path, table)
    return table
