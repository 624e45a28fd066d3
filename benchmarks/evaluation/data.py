"""What an evaluation reads: a pipeline run's manifests and a synth ground-truth folder."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.parquet as pq

# The pipeline's normalized timeline when a run does not say otherwise.
DEFAULT_RUN_FPS = 25.0


def video_id_of_uri(uri: str) -> str:
    """The stem of an input's file name (``/x/synth-0003.mp4`` -> ``synth-0003``)."""
    parsed = urlparse(uri)
    path = parsed.path if parsed.scheme and len(parsed.scheme) > 1 else uri
    return PurePosixPath(path.replace("\\", "/")).stem


def read_columns(path: Path, wanted: list[str]) -> pa.Table:
    """Read the `wanted` columns that exist in a Parquet file (later pipelines may add or drop some)."""
    names = set(pq.read_schema(path).names)
    return pq.read_table(path, columns=[c for c in wanted if c in names])


@dataclass(slots=True)
class TruthSet:
    """A synth ground-truth folder: one sub-folder per video with a meta.json."""

    truth_dir: Path
    video_ids: list[str]

    @classmethod
    def open(cls, path: Path) -> TruthSet:
        """Accept either a synth output folder (uses its truth/) or the truth folder itself."""
        path = Path(path)
        truth_dir = path / "truth" if (path / "truth").is_dir() else path
        ids = sorted(p.name for p in truth_dir.iterdir() if (p / "meta.json").is_file()) if truth_dir.is_dir() else []
        if not ids:
            raise FileNotFoundError(f"no ground truth (sub-folders with meta.json) in {truth_dir}")
        return cls(truth_dir=truth_dir, video_ids=ids)

    def path(self, video_id: str, name: str) -> Path:
        return self.truth_dir / video_id / name

    def meta(self, video_id: str) -> dict:
        return json.loads(self.path(video_id, "meta.json").read_text())

    def table(self, video_id: str, name: str) -> pa.Table:
        return pq.read_table(self.path(video_id, name))


@dataclass(slots=True)
class RunView:
    """A pipeline run as an evaluation sees it: its manifests, mapped onto truth videos.

    Attributes:
        run_dir: The run folder.
        sources: `manifests/sources.parquet` (the columns evaluations use).
        clips: `manifests/clips.parquet`, or None when the run wrote none.
        source_of_video: Truth video id -> the run's source_id for it.
        unmatched_sources: Inputs whose file-name stem is no truth video.
        duplicate_sources: Inputs mapped to a video that an earlier source already took.
        fps_of_source: The normalized frame rate of each source (25 unless the run says).
    """

    run_dir: Path
    sources: pa.Table
    clips: pa.Table | None
    source_of_video: dict[str, str] = field(default_factory=dict)
    unmatched_sources: list[str] = field(default_factory=list)
    duplicate_sources: list[str] = field(default_factory=list)
    fps_of_source: dict[str, float] = field(default_factory=dict)

    @classmethod
    def open(cls, run_dir: Path, truth: TruthSet) -> RunView:
        run_dir = Path(run_dir)
        sources_path = run_dir / "manifests" / "sources.parquet"
        if not sources_path.is_file():
            raise FileNotFoundError(f"{sources_path} does not exist: is {run_dir} a finished run?")
        sources = read_columns(sources_path, ["source_uri", "source_id", "status", "norm_fps"])
        clips_path = run_dir / "manifests" / "clips.parquet"
        clips = None
        if clips_path.is_file():
            clips = read_columns(clips_path, ["source_id", "key", "status", "shot_index", "start_frame",
                                              "end_frame", "start_s", "end_s", "norm_fps", "seam"])
        view = cls(run_dir=run_dir, sources=sources, clips=clips)
        known = set(truth.video_ids)
        rows = sorted(sources.to_pylist(), key=lambda r: (str(r["source_uri"]), str(r.get("source_id") or "")))
        for row in rows:
            uri, source_id = str(row["source_uri"]), str(row.get("source_id") or "")
            fps = row.get("norm_fps")
            view.fps_of_source[source_id] = float(fps) if fps else DEFAULT_RUN_FPS
            video = video_id_of_uri(uri)
            if video not in known:
                view.unmatched_sources.append(uri)
            elif video in view.source_of_video:
                view.duplicate_sources.append(uri)
            else:
                view.source_of_video[video] = source_id
        return view

    def has(self, relative: str) -> bool:
        return (self.run_dir / relative).exists()
