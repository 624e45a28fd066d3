"""The manifest rows: one per input (`sources.parquet`) and one per shot/clip (`clips.parquet`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from voxhear.pipeline.records import ShotRecord, SourceRecord


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


if TYPE_CHECKING:

    class ClipRow(ShotRecord):
        """For the type checker only: what every `clip_row_type` class adds to its final type."""

        shard: str
        commit: int


_clip_row_types: dict[type[ShotRecord], type[ClipRow]] = {}


def clip_row_type(final_type: type[ShotRecord]) -> type[ClipRow]:
    """The clips.parquet row for a pipeline whose last stage emits `final_type`.

    Every field of the final record, plus `shard` (the tar holding a kept clip) and `commit`.
    Built from the record type so that adding a stage never needs a second schema to edit.
    """
    row_type = _clip_row_types.get(final_type)
    if row_type is None:
        made = dataclasses.make_dataclass(
            f"{final_type.__name__}ManifestRow",
            [("shard", str, dataclasses.field(default="")), ("commit", int, dataclasses.field(default=0))],
            bases=(final_type,),
            slots=True,
            namespace={
                "__doc__": f"One row per {final_type.__name__} in clips.parquet, kept or rejected.",
                "__module__": __name__,
            },
        )
        # A class built at run time: a subclass of final_type with the two fields ClipRow declares.
        row_type = _clip_row_types[final_type] = cast("type[ClipRow]", made)
    return row_type


ClipManifestRow = clip_row_type(ShotRecord)
