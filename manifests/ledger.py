"""The commit ledger that makes a run resumable without loss or duplicates.

A commit publishes shards and records, in this order: the shards (renamed from temp names),
`_ledger/NNNNNN-clips.parquet` (the clips in those shards, and the rejected clips of finished
sources), then `_ledger/NNNNNN-sources.parquet` (the sources whose every sample is now
published; possibly none). The sources part is the commit record: at start-up anything not
covered by one (temp files, shards no committed clip lists, a clips part without its sources
part) is the debris of a killed run and is deleted. Every input without a committed source row
is processed again, and samples whose keys a commit already published are not written twice
(a source may span shards, so its first samples can be committed before the source is).

A commit that publishes shards also records their sha256 (`NNNNNN-shards.parquet`, before the
sources part); shards rewritten later (splits, takedowns) change in commits of their own, and
takedowns (`NNNNNN-takedowns.parquet`) and the splits pass's assignment (`NNNNNN-splits.parquet`)
are recorded there too: see `manifests/integrity.py`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from voxhear.manifests.integrity import (
    complete_rewrites,
    consolidate_splits,
    consolidate_takedowns,
    next_shard_number,
    shard_table,
)
from voxhear.manifests.schemas import ClipManifestRow, SourceManifestRow
from voxhear.pipeline.io import atomic_write_table, remove_stale_temps

if TYPE_CHECKING:
    from voxhear.manifests.schemas import ClipRow

SHARD_PATTERN = re.compile(r"^(\d{6})\.tar$")
PART_PATTERN = re.compile(r"^(\d{6})-(sources|clips|shards|takedowns|splits)\.parquet$")


@dataclass
class LedgerState:
    """What earlier attempts of this run committed."""

    status_by_uri: dict[str, str] = field(default_factory=dict)
    source_ids: dict[str, str] = field(default_factory=dict)  # source_id -> uri that owns it
    published_keys: set[str] = field(default_factory=set)
    next_commit: int = 0
    next_shard: int = 0


class Ledger:
    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.ledger_dir = self.run_dir / "manifests" / "_ledger"
        self.shards_dir = self.run_dir / "shards"
        self.ledger_dir.mkdir(parents=True, exist_ok=True)
        self.shards_dir.mkdir(parents=True, exist_ok=True)

    def _parts(self, kind: str) -> dict[int, Path]:
        found = {}
        for path in self.ledger_dir.iterdir():
            match = PART_PATTERN.match(path.name)
            if match and match.group(2) == kind:
                found[int(match.group(1))] = path
        return found

    def recover(self) -> LedgerState:
        """Delete what a killed attempt left half-done and return what is committed."""
        remove_stale_temps(self.run_dir / "manifests")
        remove_stale_temps(self.shards_dir)
        sources, clips = self._parts("sources"), self._parts("clips")
        others = [self._parts(kind) for kind in ("shards", "takedowns", "splits")]
        for seq, path in [*clips.items(), *(item for parts in others for item in parts.items())]:
            if seq not in sources:
                path.unlink()
        complete_rewrites(self.run_dir)
        committed_shards: set[str] = set()
        state = LedgerState()
        for seq in sorted(sources):
            table = pq.read_table(sources[seq], columns=["source_uri", "source_id", "status"])
            for uri, sid, status in zip(*(table.column(c).to_pylist() for c in table.column_names)):
                state.status_by_uri[uri] = status
                if status == "ok":
                    state.source_ids[sid] = uri
            if seq in clips:
                part = pq.read_table(clips[seq], columns=["key", "shard"])
                for key, shard in zip(part.column("key").to_pylist(), part.column("shard").to_pylist()):
                    if shard:
                        committed_shards.add(shard)
                        state.published_keys.add(key)
            state.next_commit = seq + 1
        for path in self.shards_dir.iterdir():
            match = SHARD_PATTERN.match(path.name)
            if match and path.name not in committed_shards:
                path.unlink()  # published by a commit that never completed
            elif match:
                state.next_shard = max(state.next_shard, int(match.group(1)) + 1)
        state.next_shard = max(state.next_shard, next_shard_number(self.run_dir))  # removed shards too
        return state

    def commit(
        self,
        seq: int,
        sources: Sequence[SourceManifestRow],
        clips: Sequence[ClipRow],
        clip_type: type[ClipRow],
        shards: Sequence[str] = (),
        known: Mapping[str, tuple[str, int]] | None = None,
    ) -> None:
        """Record `clips`, the sha256 of the just published `shards` (`known`: name -> (sha256, bytes)
        as their writer measured them; others are hashed here), then `sources` (the commit record)."""
        for row in sources:
            row.commit = seq
        for clip in clips:
            clip.commit = seq
        atomic_write_table(self.ledger_dir / f"{seq:06d}-clips.parquet", clip_type.to_table(clips))
        if shards:
            atomic_write_table(
                self.ledger_dir / f"{seq:06d}-shards.parquet", shard_table(self.shards_dir, shards, seq, "sink", known)
            )
        atomic_write_table(self.ledger_dir / f"{seq:06d}-sources.parquet", SourceManifestRow.to_table(sources))


def consolidate(run_dir: Path) -> tuple[pa.Table, pa.Table]:
    """Write manifests/sources.parquet and manifests/clips.parquet from the committed ledger.

    An input committed more than once (a retried failure) keeps its latest commit only; a clip
    appears once, from the latest commit that recorded its key.
    """
    ledger = Ledger(run_dir)
    sources_parts, clip_parts = ledger._parts("sources"), ledger._parts("clips")
    source_tables = [pq.read_table(sources_parts[s], schema=SourceManifestRow.schema()) for s in sorted(sources_parts)]
    # Clip parts keep the schema they were written with (that of the pipeline's final record).
    clip_tables = [pq.read_table(clip_parts[s]) for s in sorted(clip_parts) if s in sources_parts]
    sources = pa.concat_tables(source_tables) if source_tables else SourceManifestRow.to_table([])
    clips = pa.concat_tables(clip_tables) if clip_tables else ClipManifestRow.to_table([])
    sources = _keep_latest(sources, ["source_uri"]).sort_by("source_uri")
    clips = _keep_latest(clips, ["source_uri", "key"])
    clips = clips.filter(pc.is_in(clips.column("source_uri"), sources.column("source_uri")))
    clips = clips.sort_by([("source_uri", "ascending"), ("key", "ascending")])
    sources, clips = consolidate_takedowns(run_dir, sources, clips)  # taken-down clips never come back
    clips = consolidate_splits(run_dir, clips)  # identities and splits as the shards' json has them
    manifests = Path(run_dir) / "manifests"
    atomic_write_table(manifests / "sources.parquet", sources)
    atomic_write_table(manifests / "clips.parquet", clips)
    return sources, clips


def _keep_latest(table: pa.Table, keys: list[str]) -> pa.Table:
    """Keep, for every distinct value of `keys`, the row of the highest commit."""
    if table.num_rows == 0:
        return table
    columns = [table.column(k).to_pylist() for k in keys]
    commits = table.column("commit").to_pylist()
    best: dict[tuple, int] = {}
    for index, identity in enumerate(zip(*columns)):
        if identity not in best or commits[index] >= commits[best[identity]]:
            best[identity] = index
    return table.take(pa.array(sorted(best.values()), pa.int64()))


def read_manifests(run_dir: Path) -> tuple[pa.Table, pa.Table]:
    manifests = Path(run_dir) / "manifests"
    return pq.read_table(manifests / "sources.parquet"), pq.read_table(manifests / "clips.parquet")
