"""The manifest rows: one per input (`sources.parquet`) and one per shot/clip (`clips.parquet`)."""

from __future__ import annotations

from dataclasses import dataclass

from voxhear.records import ShotRecord, SourceRecord


@dataclass(slots=True)
class SourceManifestRow(SourceRecord):
    """Exactly one per input: its final status and everything measured about it."""

    n_shots: int = 0
    n_clips_ok: int = 0
    n_clips_filtered: int = 0
    clip_seconds: float = 0.0
    total_wall_s: float = 0.0
    total_cpu_s: float = 0.0
    # The ledger commit that recorded this row; a retried input keeps only its latest commit.
    commit: int = 0


@dataclass(slots=True)
class ClipManifestRow(ShotRecord):
    """One per shot/clip, kept or rejected; `shard` names the tar holding a kept clip."""

    shard: str = ""
    commit: int = 0
