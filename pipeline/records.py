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
import math
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

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
    # Per stage, the peak resident memory (MB) of the process that ran it on this row's ancestors
    # (pipeline/memory.py): the largest, not a share, since memory is not summed over rows.
    peak_mb: dict[str, float] = field(default_factory=dict)
    # Set on each class by schema() (a ClassVar: neither a field nor a slot).
    _schema_cache: ClassVar[pa.Schema]

    @classmethod
    def schema(cls) -> pa.Schema:
        # Cached per class; computed lazily because dataclass() runs after __init_subclass__.
        cached = cls.__dict__.get("_schema_cache")
        if cached is None:
            cached = _schema_of(cls)
            cls._schema_cache = cached
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
        kwargs["peak_mb"] = dict(parent.peak_mb)
        kwargs.update(changes)
        return cls(**kwargs)

    @classmethod
    def to_table(cls, records: Sequence[Record]) -> pa.Table:
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
    # ffprobe's index of the audio stream ingest chose (the default one, else the first); -1: none.
    audio_stream_index: int = -1
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
    # Audio stages (separation, diarization, ASR), files in the work area: 16 kHz 24-bit FLAC stems
    # with speech + background == audio_uri exactly, RTTM turns, words.parquet (word, start_s,
    # end_s, speaker, probability); audio_rtf: wall seconds per audio second of each audio stage.
    speech_uri: str = ""
    background_uri: str = ""
    # The separator's own speech before its residue was returned to the stems
    # (separation.residue_taps; speech_uri itself when that is off): what diarization and ASR read.
    separated_uri: str = ""
    separation_backend: str = ""
    rttm_uri: str = ""
    # Where the mix holds two or more voices at once (RTTM, speaker "overlap"); "" when not sought.
    overlap_uri: str = ""
    n_speakers: int = 0
    speech_s: float = 0.0
    words_uri: str = ""
    n_words: int = 0
    asr_word_timing: str = ""
    audio_rtf: dict[str, float] = field(default_factory=dict)

    @property
    def separator_speech_uri(self) -> str:
        """The speech diarization and ASR read: the separator's own (`separated_uri`), or
        `speech_uri` for rows written before there was a separate file ("" without separation)."""
        return self.separated_uri or self.speech_uri


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
    # The shot is a piece of a longer one (scene_cut.max_shot_s) and starts at the seam, not at a cut.
    seam: bool = False
    key: str = ""
    segment_video_uri: str = ""
    segment_audio_uri: str = ""

    def sample_metadata(self) -> dict[str, Any]:
        """The sample's `json` member; subclasses extend it."""
        from voxhear.pipeline import __version__

        return {
            "key": self.key,
            "source_uri": self.source_uri,
            "source_id": self.source_id,
            "shot_index": self.shot_index,
            "start_frame": self.start_frame,
            "end_frame": self.end_frame,
            "start_s": self.start_s,
            "end_s": self.end_s,
            "fps": self.norm_fps,
            "width": self.norm_width,
            "height": self.norm_height,
            "pipeline": "voxhear",
            "pipeline_version": __version__,
        }

    def shard_members(self) -> dict[str, bytes]:
        """The WebDataset members of this sample (`{key}.{ext}`), in order; the only place bytes are read."""
        return {
            "json": json.dumps(self.sample_metadata(), sort_keys=True).encode(),
            "mp4": Path(self.segment_video_uri).read_bytes(),
            "flac": Path(self.segment_audio_uri).read_bytes(),
        }


def json_number(value: float) -> float | None:
    """`value` for a sample's JSON: NaN and infinities are not JSON, so they become null."""
    return value if math.isfinite(value) else None


def sample_key(source_id: str, start_ms: int, track: str | None = None) -> str:
    """Dot-free, deterministic WebDataset key (a dot would split the key in webdataset)."""
    parts = [source_id] + ([track] if track else []) + [f"{start_ms:08d}"]
    key = "-".join(parts)
    if "." in key:
        raise ValueError(f"sample key {key!r} contains a dot")
    return key


@dataclass(slots=True)
class FaceTrackRecord(ShotRecord):
    """One face track of a shot: its media, per-frame arrays, embedding and quality facts.

    Frames are on the normalized timeline (end exclusive); a track lies within its shot, whose
    bounds stay in `start_frame`/`end_frame`. Per-frame arrays (boxes, landmarks, blendshapes,
    pose, confidence) are in the `.npz` at `frames_uri`. `identity_id` stays empty here: ids are
    assigned across the whole run after the shards are written (`manifests/identities.parquet`,
    keyed by `key`).
    """

    # -1 marks a shot-level row (the shot was filtered before tracks were made).
    track_index: int = -1
    n_tracks: int = 0
    track_start_frame: int = 0
    track_end_frame: int = 0
    track_start_s: float = 0.0
    track_end_s: float = 0.0
    detector: str = ""
    frames_uri: str = ""
    # Frames files of the shot's other tracks that are on screen at the same time as this one:
    # the talk stage weighs their active-speaker evidence against this face's.
    co_visible_frames_uris: list[str] = field(default_factory=list)
    crop_video_uri: str = ""
    track_audio_uri: str = ""
    crop_size: int = 0
    embedder: str = ""
    embedding: list[float] = field(default_factory=list)
    identity_id: str = ""
    # Quality facts for later filtering: medians over the track unless named otherwise.
    face_width_px: float = 0.0
    face_height_px: float = 0.0
    yaw_deg: float = 0.0
    pitch_deg: float = 0.0
    roll_deg: float = 0.0
    abs_yaw_p90_deg: float = 0.0
    blur_var: float = 0.0
    det_score: float = 0.0
    detected_fraction: float = 0.0
    landmark_fraction: float = 0.0
    landmark_confidence: float = 0.0
    # Milliseconds per video frame of the shot spent in each step of the face stage (wall, CPU).
    ms_per_frame: dict[str, float] = field(default_factory=dict)
    cpu_ms_per_frame: dict[str, float] = field(default_factory=dict)

    def sample_metadata(self) -> dict[str, Any]:
        # dataclass(slots=True) rebuilds the class, which breaks zero-argument super().
        meta = ShotRecord.sample_metadata(self)
        meta.update(
            {
                "track_index": self.track_index,
                "n_tracks": self.n_tracks,
                "track_start_frame": self.track_start_frame,
                "track_end_frame": self.track_end_frame,
                "track_start_s": self.track_start_s,
                "track_end_s": self.track_end_s,
                "detector": self.detector,
                "crop_size": self.crop_size,
                "embedder": self.embedder,
                "embedding": self.embedding,
                "identity": "assigned after writing: join manifests/identities.parquet on key",
                # NaN (no landmarks anywhere) is not JSON: null instead.
                "quality": {
                    name: json_number(getattr(self, name))
                    for name in (
                        "face_width_px",
                        "face_height_px",
                        "yaw_deg",
                        "pitch_deg",
                        "roll_deg",
                        "abs_yaw_p90_deg",
                        "blur_var",
                        "det_score",
                        "detected_fraction",
                        "landmark_fraction",
                        "landmark_confidence",
                    )
                },
            }
        )
        return meta

    def shard_members(self) -> dict[str, bytes]:
        """mp4: the face crop video; flac: the track's span of the source audio; frames.npz: per-frame arrays."""
        return {
            "mp4": Path(self.crop_video_uri).read_bytes(),
            "flac": Path(self.track_audio_uri).read_bytes(),
            "frames.npz": Path(self.frames_uri).read_bytes(),
            "json": json.dumps(self.sample_metadata(), sort_keys=True).encode(),
        }


# The version of a clip sample's json (docs/shard-format.md).
SHARD_FORMAT = 2

# Per-frame state of the on-screen person (frames.npz `state`), as small integer codes.
STATE_NAMES = ("silence", "talk", "listen", "both")
STATE_SILENCE, STATE_TALK, STATE_LISTEN, STATE_BOTH = range(4)
AUDIO_TRACKS = ("mix", "self", "other", "background")


@dataclass(slots=True)
class ClipRecord(FaceTrackRecord):
    """One clip: a window of one face track, with the on-screen person's talk/listen labels and
    their own speech, the other party's speech and the background as separate tracks.

    The clip spans frames [clip_start_frame, clip_end_frame) of the normalized timeline, inside
    its track; `key` is `{source_id}-face{track_index}-{clip start ms}`. Work files: the crop
    video window, the four 16 kHz FLAC tracks (self + other + background == mix sample for
    sample), per-frame arrays and words. `split` and `identity_id` are filled after the run,
    when every clip's identity is known (voxhear.passes.splits), in the manifests only.
    """

    # -1 marks a track-level row (the track was filtered before clips were cut).
    clip_index: int = -1
    n_clips: int = 0
    clip_start_frame: int = 0
    clip_end_frame: int = 0
    clip_start_s: float = 0.0
    clip_end_s: float = 0.0
    clip_video_uri: str = ""
    clip_frames_uri: str = ""
    words_json_uri: str = ""
    mix_uri: str = ""
    self_uri: str = ""
    other_uri: str = ""
    background_clip_uri: str = ""
    # Attribution: the diarized speaker who is the on-screen person ("" when they never speak
    # here), the others, and the evidence (mean smoothed Light-ASD logit during each speaker's
    # solo turns inside the track; margin = best minus runner-up or minus the absolute threshold).
    self_speaker: str = ""
    # Every diarized speaker attributed to the on-screen person (self_speaker first): one voice
    # that diarization split is still one person when the face talks with all of them.
    self_speakers: list[str] = field(default_factory=list)
    other_speakers: list[str] = field(default_factory=list)
    speaker_asd: dict[str, float] = field(default_factory=dict)
    attribution_margin: float = 0.0
    asd_mean: float = 0.0
    # Seconds of the clip in each state of the on-screen person, and derived shares.
    talk_s: float = 0.0
    listen_s: float = 0.0
    both_s: float = 0.0
    silence_s: float = 0.0
    speech_share: float = 0.0
    overlap_share: float = 0.0
    # Background power gained while anyone speaks (over its power in pauses, the recording's
    # floor), relative to the mix's power then (dB, at most about 0): the share of the speech
    # that the separator left in the background. NaN without pauses (talk/tracks.py).
    background_leak_db: float = 0.0
    # Largest distance between the track's per-part identity embeddings (identity switch).
    embedding_spread: float = 0.0
    n_words_self: int = 0
    n_words_other: int = 0
    # Every reason the quality filter found (status/reason hold the first).
    filter_reasons: list[str] = field(default_factory=list)
    # Provenance: the source's licence and attribution (from a sidecar, see docs/shard-format.md),
    # sha256 of every model file the clip went through, and a hash of the processing config.
    source_licence: str = ""
    source_attribution: str = ""
    model_hashes: dict[str, str] = field(default_factory=dict)
    config_hash: str = ""
    split: str = ""

    def sample_metadata(self) -> dict[str, Any]:
        meta = ShotRecord.sample_metadata(self)
        meta.update(
            {
                "track_index": self.track_index,
                "track_start_frame": self.track_start_frame,
                "track_end_frame": self.track_end_frame,
                "clip_index": self.clip_index,
                "n_clips": self.n_clips,
                "clip_start_frame": self.clip_start_frame,
                "clip_end_frame": self.clip_end_frame,
                "clip_start_s": self.clip_start_s,
                "clip_end_s": self.clip_end_s,
                "n_frames": self.clip_end_frame - self.clip_start_frame,
                "sample_rate": 16000,
                "self_speaker": self.self_speaker,
                "other_speakers": list(self.other_speakers),
                "state_seconds": {
                    "talk": self.talk_s,
                    "listen": self.listen_s,
                    "both": self.both_s,
                    "silence": self.silence_s,
                },
                "quality": {
                    name: json_number(getattr(self, name))
                    for name in (
                        "face_width_px",
                        "face_height_px",
                        "yaw_deg",
                        "pitch_deg",
                        "roll_deg",
                        "abs_yaw_p90_deg",
                        "blur_var",
                        "landmark_fraction",
                        "landmark_confidence",
                        "attribution_margin",
                        "asd_mean",
                        "speech_share",
                        "overlap_share",
                        "background_leak_db",
                        "embedding_spread",
                    )
                },
                "speaker_asd": {k: json_number(v) for k, v in self.speaker_asd.items()},
                "provenance": {
                    "source_uri": self.source_uri,
                    "licence": self.source_licence,
                    "attribution": self.source_attribution,
                },
                "models": dict(self.model_hashes),
                "config_hash": self.config_hash,
                # 2: identity_id and split are in the manifests and the sample index, not here
                # (they are assigned after the run; docs/design/worker-shards.md).
                "shard_format": SHARD_FORMAT,
            }
        )
        return meta

    def shard_members(self) -> dict[str, bytes]:
        """The sample as docs/shard-format.md specifies it."""
        return {
            "mp4": Path(self.clip_video_uri).read_bytes(),
            "mix.flac": Path(self.mix_uri).read_bytes(),
            "self.flac": Path(self.self_uri).read_bytes(),
            "other.flac": Path(self.other_uri).read_bytes(),
            "background.flac": Path(self.background_clip_uri).read_bytes(),
            "frames.npz": Path(self.clip_frames_uri).read_bytes(),
            "words.json": Path(self.words_json_uri).read_bytes(),
            "json": json.dumps(self.sample_metadata(), sort_keys=True).encode(),
        }


def clip_span(row: Mapping[str, Any]) -> tuple[float, float]:
    """A final row's own span in seconds (a manifest row as a dict): the talk stage's clip window,
    else the face track's, else the shot's (a long track is cut into several clips; each counts once)."""
    if row.get("clip_index", -1) >= 0 and row.get("clip_end_s", 0.0) > row.get("clip_start_s", 0.0):
        return row["clip_start_s"], row["clip_end_s"]
    if row.get("track_index", -1) >= 0:
        return row["track_start_s"], row["track_end_s"]
    return row["start_s"], row["end_s"]
