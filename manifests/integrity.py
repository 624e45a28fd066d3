"""Shard sha256 records, shard rewrites and takedown records in the commit ledger.

Every commit that publishes shards records each one's sha256 and size in
`_ledger/NNNNNN-shards.parquet`, written before the commit's sources part (the commit record),
so it is committed with the shards. A shard that changes after its commit (the splits pass
rewriting its samples' json, a takedown removing samples) changes in a commit of its own,
`ShardRewrite`:

1. each new shard is written beside the old one as `.NNNNNN.tar.cSEQ.staged` and fsynced;
2. the commit's parts are written: `SEQ-shards.parquet` (the new sha256, "" for a shard that
   was removed), `SEQ-takedowns.parquet` (what a takedown removed), `SEQ-splits.parquet` (the
   identity and split of every clip the splits pass wrote into the shards' json), then an empty
   `SEQ-sources.parquet`, the commit record;
3. the staged files are renamed over the shards, and removed shards are deleted.

A kill before the commit record leaves the old shards with their old records (the staged files
are deleted at the next recovery); a kill after it is rolled forward by `complete_rewrites`
(called by `Ledger.recover` and by every rewrite before it starts). Either way each shard ends
matching the latest sha256 the ledger holds for it. A shard name is never reused.

The splits part is what keeps `clips.parquet` and `splits.parquet` in step with the shards: the
pass writes them after its commit, and every consolidation rebuilds them from the latest
committed splits part (`consolidate_splits`), so a kill between the commit and those writes
is repaired by the next run (and reported by `voxhear verify` until then).

Takedown records are what makes a takedown stick: the removed clips stay in the ledger's clips
parts (so a resume neither processes their source again nor writes their keys a second time),
and `apply_takedowns` drops them from every consolidation.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from voxhear.manifests.schemas import SourceManifestRow
from voxhear.pipeline.io import atomic_write_table, fsync_dir, sha256_file
from voxhear.pipeline.records import clip_span

_PART = re.compile(r"^(\d{6})-([a-z]+)\.parquet$")
_SHARD = re.compile(r"^(\d{6})\.tar$")
_STAGED = re.compile(r"^\.(\d{6}\.tar)\.c(\d{6})\.staged$")
TAKEDOWNS_FILE = "takedowns.parquet"
SPLITS_FILE = "splits.parquet"

SHARDS_SCHEMA = pa.schema(
    [
        pa.field("shard", pa.string(), nullable=False),
        pa.field("sha256", pa.string(), nullable=False),  # "" once the shard was removed
        pa.field("bytes", pa.int64(), nullable=False),
        pa.field("commit", pa.int64(), nullable=False),
        pa.field("cause", pa.string(), nullable=False),  # sink, splits or takedown
    ]
)
TAKEDOWNS_SCHEMA = pa.schema(
    [
        pa.field("key", pa.string(), nullable=False),
        pa.field("source_id", pa.string(), nullable=False),
        pa.field("source_uri", pa.string(), nullable=False),
        pa.field("identity_id", pa.string(), nullable=False),
        pa.field("shard", pa.string(), nullable=False),  # where the sample was ("" if it was in none)
        pa.field("selector", pa.string(), nullable=False),  # what matched it: key=…, source_id=…, identity=…
        pa.field("reason", pa.string(), nullable=False),
        pa.field("taken_down_at", pa.string(), nullable=False),  # UTC, ISO 8601
        pa.field("commit", pa.int64(), nullable=False),
    ]
)


# key -> identity and split (voxhear.passes.splits): the ledger's splits parts and manifests/splits.parquet.
SPLITS_SCHEMA = pa.schema(
    [
        pa.field("key", pa.string(), nullable=False),
        pa.field("identity_id", pa.string(), nullable=False),
        pa.field("split", pa.string(), nullable=False),
    ]
)


@dataclass(frozen=True)
class ShardRecord:
    shard: str
    sha256: str
    bytes: int
    commit: int
    cause: str

    @property
    def removed(self) -> bool:
        return not self.sha256


def ledger_dir_of(run_dir: Path) -> Path:
    return Path(run_dir) / "manifests" / "_ledger"


def _all_parts(ledger_dir: Path) -> dict[str, dict[int, Path]]:
    found: dict[str, dict[int, Path]] = {}
    if ledger_dir.is_dir():
        for path in ledger_dir.iterdir():
            match = _PART.match(path.name)
            if match:
                found.setdefault(match.group(2), {})[int(match.group(1))] = path
    return found


def committed_parts(ledger_dir: Path, kind: str) -> dict[int, Path]:
    """The parts of `kind` whose commit has its sources part (the commit record)."""
    parts = _all_parts(ledger_dir)
    committed = parts.get("sources", {})
    return {seq: path for seq, path in parts.get(kind, {}).items() if seq in committed}


def next_seq(ledger_dir: Path) -> int:
    """A commit number above every part present (committed or debris a recovery will delete)."""
    return 1 + max((seq for parts in _all_parts(ledger_dir).values() for seq in parts), default=-1)


def shard_table(
    shards_dir: Path, names: Iterable[str], seq: int, cause: str, known: Mapping[str, tuple[str, int]] | None = None
) -> pa.Table:
    """The records of the shards `names` as they are on disk now; `known` gives (sha256, bytes) of
    shards their writer hashed while writing them (not read again)."""
    return _record_table({name: shards_dir / name for name in names}, (), seq, cause, known or {})


def _record_table(
    files: dict[str, Path], removed: Iterable[str], seq: int, cause: str, known: Mapping[str, tuple[str, int]] = {}
) -> pa.Table:
    """Records of shards whose content is at `files[name]`, and of `removed` shards (sha256 "")."""
    rows = [
        {"shard": n, "sha256": known[n][0], "bytes": known[n][1]}
        if n in known
        else {"shard": n, "sha256": sha256_file(p), "bytes": p.stat().st_size}
        for n, p in sorted(files.items())
    ]
    rows += [{"shard": name, "sha256": "", "bytes": 0} for name in sorted(removed)]
    return pa.Table.from_pylist([{**row, "commit": seq, "cause": cause} for row in rows], schema=SHARDS_SCHEMA)


def shard_records(run_dir: Path) -> dict[str, ShardRecord]:
    """The latest committed record of every shard the ledger knows (removed ones included)."""
    latest: dict[str, ShardRecord] = {}
    for _, path in sorted(committed_parts(ledger_dir_of(run_dir), "shards").items()):
        for row in pq.read_table(path, schema=SHARDS_SCHEMA).to_pylist():
            latest[row["shard"]] = ShardRecord(**row)
    return latest


def next_shard_number(run_dir: Path) -> int:
    """One above every shard number the ledger recorded, so that a removed shard's name is not reused."""
    numbers = [int(m.group(1)) for name in shard_records(run_dir) if (m := _SHARD.match(name))]
    return max(numbers, default=-1) + 1


def complete_rewrites(run_dir: Path) -> None:
    """Finish committed rewrites a kill interrupted (rename staged shards, delete removed ones);
    delete the staged files of rewrites that never committed."""
    shards_dir = Path(run_dir) / "shards"
    if not shards_dir.is_dir():
        return
    committed = set(_all_parts(ledger_dir_of(run_dir)).get("sources", {}))
    changed = False
    for path in shards_dir.iterdir():
        match = _STAGED.match(path.name)
        if match:
            if int(match.group(2)) in committed:
                os.replace(path, shards_dir / match.group(1))
            else:
                path.unlink()
            changed = True
    for name, record in shard_records(run_dir).items():
        if record.removed and (shards_dir / name).exists():
            (shards_dir / name).unlink()
            changed = True
    if changed:
        fsync_dir(shards_dir)


class ShardRewrite:
    """One ledger commit that replaces or removes published shards (and records takedowns).

    `stage(name)` gives the path to write a shard's new content to (the caller may leave it
    unwritten: that shard is then unchanged), `remove(name)` deletes a shard, `parts[kind]` is a
    further ledger part of the commit (`splits`); `commit()` records and applies it all
    atomically (see the module docstring).
    """

    def __init__(self, run_dir: Path, cause: str) -> None:
        self.run_dir = Path(run_dir)
        self.shards_dir = self.run_dir / "shards"
        self.ledger_dir = ledger_dir_of(run_dir)
        self.cause = cause
        complete_rewrites(self.run_dir)
        self.seq = next_seq(self.ledger_dir)
        self._staged: dict[str, Path] = {}
        self._removed: set[str] = set()
        self.takedowns: list[dict] = []
        self.parts: dict[str, pa.Table] = {}

    def stage(self, name: str) -> Path:
        path = self.shards_dir / f".{name}.c{self.seq:06d}.staged"
        path.unlink(missing_ok=True)
        self._staged[name] = path
        return path

    def remove(self, name: str) -> None:
        staged = self._staged.pop(name, None)
        if staged is not None:
            staged.unlink(missing_ok=True)
        self._removed.add(name)

    def commit(self) -> int | None:
        """Record and apply the rewrite; returns its commit number, None when nothing changed."""
        staged = {name: path for name, path in self._staged.items() if path.is_file()}
        if not staged and not self._removed and not self.takedowns and not self.parts:
            return None
        for path in staged.values():
            with open(path, "rb+") as handle:
                os.fsync(handle.fileno())
        fsync_dir(self.shards_dir)
        self.ledger_dir.mkdir(parents=True, exist_ok=True)
        seq = f"{self.seq:06d}"
        records = _record_table(staged, self._removed, self.seq, self.cause)
        atomic_write_table(self.ledger_dir / f"{seq}-shards.parquet", records)
        if self.takedowns:
            rows = [{**row, "commit": self.seq} for row in self.takedowns]
            atomic_write_table(
                self.ledger_dir / f"{seq}-takedowns.parquet", pa.Table.from_pylist(rows, TAKEDOWNS_SCHEMA)
            )
        for kind, table in sorted(self.parts.items()):
            atomic_write_table(self.ledger_dir / f"{seq}-{kind}.parquet", table)
        atomic_write_table(self.ledger_dir / f"{seq}-sources.parquet", SourceManifestRow.to_table([]))  # commit record
        complete_rewrites(self.run_dir)
        return self.seq


def takedown_records(run_dir: Path) -> pa.Table:
    """Every committed takedown, in commit order."""
    parts = committed_parts(ledger_dir_of(run_dir), "takedowns")
    tables = [pq.read_table(parts[seq], schema=TAKEDOWNS_SCHEMA) for seq in sorted(parts)]
    return pa.concat_tables(tables) if tables else TAKEDOWNS_SCHEMA.empty_table()


def apply_takedowns(sources: pa.Table, clips: pa.Table, keys: Iterable[str]) -> tuple[pa.Table, pa.Table]:
    """Drop the clips of `keys` (every row of such a key, whatever its status) and take the kept
    ones among them off their source's `n_clips_ok` and `clip_seconds`."""
    wanted = pa.array(sorted(set(keys)), pa.string())
    if len(wanted) == 0 or clips.num_rows == 0:
        return sources, clips
    hit = pc.is_in(clips.column("key"), wanted)
    spans = ("clip_index", "clip_start_s", "clip_end_s", "track_index", "track_start_s", "track_end_s")
    wanted = ["source_uri", "status", "start_s", "end_s", *(c for c in spans if c in clips.column_names)]
    removed = clips.filter(hit).select(wanted).to_pylist()
    clips = clips.filter(pc.invert(hit))
    count: dict[str, int] = {}
    seconds: dict[str, float] = {}
    for row in removed:
        if row["status"] == "ok":
            count[row["source_uri"]] = count.get(row["source_uri"], 0) + 1
            start, end = clip_span(row)  # a clip window's own span, not its shot's
            seconds[row["source_uri"]] = seconds.get(row["source_uri"], 0.0) + end - start
    if count and sources.num_rows:
        uris = sources.column("source_uri").to_pylist()
        deltas: dict[str, dict[str, int] | dict[str, float]] = {"n_clips_ok": count, "clip_seconds": seconds}
        for column, delta in deltas.items():
            index = sources.column_names.index(column)
            values = [max(v - delta.get(u, 0), 0) for u, v in zip(uris, sources.column(column).to_pylist())]
            sources = sources.set_column(
                index, sources.schema.field(index), pa.array(values, sources.schema.field(index).type)
            )
    return sources, clips


def consolidate_takedowns(run_dir: Path, sources: pa.Table, clips: pa.Table) -> tuple[pa.Table, pa.Table]:
    """`apply_takedowns` with every committed takedown; writes manifests/takedowns.parquet when there are any."""
    records = takedown_records(run_dir)
    if records.num_rows == 0:
        return sources, clips
    atomic_write_table(Path(run_dir) / "manifests" / TAKEDOWNS_FILE, records)
    return apply_takedowns(sources, clips, records.column("key").to_pylist())


def committed_splits(run_dir: Path) -> pa.Table | None:
    """The identity and split of every clip as the latest committed splits pass wrote them into
    the shards (SPLITS_SCHEMA), or None before the first."""
    parts = committed_parts(ledger_dir_of(run_dir), "splits")
    return pq.read_table(parts[max(parts)], schema=SPLITS_SCHEMA) if parts else None


def with_splits(clips: pa.Table, splits: pa.Table) -> pa.Table:
    """`clips` with `identity_id` and `split` set from `splits` by key ("" for a key not in it)."""
    by_key = {row["key"]: row for row in splits.to_pylist()}
    keys = clips.column("key").to_pylist()
    for column in ("identity_id", "split"):
        values = [by_key[k][column] if k in by_key else "" for k in keys]
        index = clips.column_names.index(column)
        clips = clips.set_column(index, clips.schema.field(index), pa.array(values, pa.string()))
    return clips


def consolidate_splits(run_dir: Path, clips: pa.Table) -> pa.Table:
    """For a run whose clips have splits: `with_splits` of the latest committed splits pass, and
    manifests/splits.parquet written from it (keys no longer in `clips`, taken down, left out)."""
    if not {"identity_id", "split"} <= set(clips.column_names):
        return clips
    splits = committed_splits(run_dir)
    if splits is None:
        return clips
    splits = splits.filter(pc.is_in(splits.column("key"), clips.column("key")))
    atomic_write_table(Path(run_dir) / "manifests" / SPLITS_FILE, splits)
    return with_splits(clips, splits)
