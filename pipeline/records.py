"""Typed records passed between stages, each with one declared Arrow schema.

Schemas are derived once from the type hints (never inferred from a batch: a later `None` or a
stray key would otherwise fail a Parquet write hours into a run). Rows carry URIs of media in the
run's work area, never the media bytes.

Every record carries the envelope fields of `Record`: its source, its status and, for resume
bookkeeping, `share_den`: a row is worth 1/share_den of its source, so the sink knows a source is
complete when the shares of the rows it has received add up to exactly one.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pyarrow as pa

STATUS_OK = "ok"
STATUS_FILTERED = "filtered"
STATUS_FAILED = "failed"
STATUSES = (STATUS_OK, STATUS_FILTERED, STATUS_FAILED)

R = TypeVar("R", bound="Record")

_SCALAR_TYPES: dict[Any, pa.DataType] = {
    str: pa.string(),
    int: pa.int64(),
    float: pa.float64(),
    bool: pa.bool_(),
}


def _arrow_type(tp: Any) -> pa.DataType:
    if tp in _SCALAR_TYPES:
        return _SCALAR_TYPES[tp]
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is dict:
        return pa.map_(_arrow_type(args[0]), _arrow_type(args[1]))
    if origin is list:
        return pa.list_(_arrow_type(args[0]))
    raise TypeError(f"no Arrow type declared for {tp}")


def _schema_of(cls: type) -> pa.Schema:
    hints = typing.get_type_hints(cls)
    fields = []
    for f in dataclasses.fields(cls):
        arrow = f.metadata.get("arrow") or _arrow_type(hints[f.name])
        fields.append(pa.field(f.name, arrow, nullable=f.metadata.get("nullable", False)))
    return pa.schema(fields)


@dataclass(slots=True)
class Record:
    """Envelope fields shared by every record."""

    source_uri: str
    source_id: str = ""
    status: str = STATUS_OK
    # The stage that filtered or failed this row, with a short machine-readable reason.
    stage: str = ""
    reason: str = ""
    error_type: str = ""
    error_message: str = ""
    share_den: int = 1
    wall_s: dict[str, float] = field(default_factory=dict)
    cpu_s: dict[str, float] = field(default_factory=dict)

    @classmethod
    def schema(cls) -> pa.Schema:
        # Cached per class; computed lazily because dataclass() runs after __init_subclass__.
        cached = cls.__dict__.get("_schema_cache")
        if cached is None:
            cached = _schema_of(cls)
            setattr(cls, "_schema_cache", cached)
        return cached

    def to_row(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_row(cls: type[R], row: dict[str, Any]) -> R:
        kwargs = {}
        for f in dataclasses.fields(cls):
            if f.name not in row:
                continue
            value = row[f.name]
            # Arrow hands map columns back as lists of (key, value) pairs.
            if f.default_factory is dict:
                value = dict(value or {})
            kwargs[f.name] = value
        return cls(**kwargs)

    @classmethod
    def from_parent(cls: type[R], parent: Record, **changes: Any) -> R:
        """A record of this type that inherits every field it shares with `parent`."""
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {f.name: getattr(parent, f.name) for f in dataclasses.fields(parent) if f.name in names}
        kwargs["wall_s"] = dict(parent.wall_s)
        kwargs["cpu_s"] = dict(parent.cpu_s)
        kwargs.update(changes)
        return cls(**kwargs)

    @classmethod
    def to_table(cls, records: list[Record]) -> pa.Table:
        return pa.Table.from_pylist([r.to_row() for r in records], schema=cls.schema())

    @classmethod
    def from_table(cls: type[R], table: pa.Table) -> list[R]:
        return [cls.from_row(row) for row in table.to_pylist()]

    def mark(self, status: str, stage: str, reason: str, error_type: str = "", message: str = "") -> None:
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}")
        self.status, self.stage, self.reason = status, stage, reason
        self.error_type, self.error_message = error_type, message


@dataclass(slots=True)
class SourceRecord(Record):
    """One input video: what the probe found and where its normalized media are."""

    size_bytes: int = 0
    container: str = ""
    duration_s: float = 0.0
    width: int = 0
    height: int = 0
    fps: float = 0.0
    video_codec: str = ""
    audio_codec: str = ""
    audio_sample_rate: int = 0
    audio_channels: int = 0
    has_video: bool = False
    has_audio: bool = False
    # Normalized media in the work area: constant-fps H.264 video and mono audio at the pipeline rate.
    video_uri: str = ""
    audio_uri: str = ""
    audio_orig_uri: str = ""
    norm_width: int = 0
    norm_height: int = 0
    norm_fps: float = 0.0
    n_frames: int = 0


@dataclass(slots=True)
class ShotRecord(SourceRecord):
    """One shot of a source (frames are on the normalized timeline; end is exclusive)."""

    # -1 marks a source-level row: the source ended before it was cut into shots.
    shot_index: int = -1
    n_shots: int = 0
    start_frame: int = 0
    end_frame: int = 0
    start_s: float = 0.0
    end_s: float = 0.0
    key: str = ""
    segment_video_uri: str = ""
    segment_audio_uri: str = ""

    def sample_metadata(self) -> dict[str, Any]:
        """The sample's `json` member; subclasses extend it."""
        from voxhear import __version__

        return {
            "key": self.key, "source_uri": self.source_uri, "source_id": self.source_id,
            "shot_index": self.shot_index, "start_frame": self.start_frame, "end_frame": self.end_frame,
            "start_s": self.start_s, "end_s": self.end_s, "fps": self.norm_fps,
            "width": self.norm_width, "height": self.norm_height,
            "pipeline": "voxhear", "pipeline_version": __version__,
        }

    def shard_members(self) -> dict[str, bytes]:
        """The WebDataset members of this sample (`{key}.{ext}`), in order; the only place bytes are read."""
        return {
            "json": json.dumps(self.sample_metadata(), sort_keys=True).encode(),
            "mp4": Path(self.segment_video_uri).read_bytes(),
            "flac": Path(self.segment_audio_uri).read_bytes(),
        }


def sample_key(source_id: str, start_ms: int, track: str | None = None) -> str:
    """Dot-free, deterministic WebDataset key (a dot would split the key in webdataset)."""
    parts = [source_id] + ([track] if track else []) + [f"{start_ms:08d}"]
    key = "-".join(parts)
    if "." in key:
        raise ValueError(f"sample key {key!r} contains a dot")
    return key
