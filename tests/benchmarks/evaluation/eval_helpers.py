"""Hand-made truth folders and run folders for the evaluation tests."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from voxhear.benchmarks.synth.truth import SHOTS_SCHEMA

SOURCES_SCHEMA = pa.schema([("source_uri", pa.string()), ("source_id", pa.string()), ("status", pa.string())])
CLIPS_SCHEMA = pa.schema([("source_id", pa.string()), ("key", pa.string()), ("status", pa.string()),
                          ("shot_index", pa.int64()), ("start_frame", pa.int64()), ("end_frame", pa.int64()),
                          ("start_s", pa.float64()), ("end_s", pa.float64())])


def write_truth_video(truth_dir: Path, video_id: str, starts: list[int], n_frames: int, fps: float = 25.0) -> None:
    """A truth folder with just what the shot metric reads: shots.parquet and meta.json."""
    folder = truth_dir / video_id
    folder.mkdir(parents=True)
    ends = starts[1:] + [n_frames]
    rows = [{"shot_index": i, "start_frame": s, "end_frame": e, "start_s": s / fps, "end_s": e / fps,
             "kind": "AB"[i % 2], "people": ["AB"[i % 2]]} for i, (s, e) in enumerate(zip(starts, ends))]
    pq.write_table(pa.Table.from_pylist(rows, schema=SHOTS_SCHEMA), folder / "shots.parquet")
    (folder / "meta.json").write_text(json.dumps({"video_id": video_id, "fps": fps, "n_frames": n_frames}))


def write_run(run_dir: Path, sources: list[tuple[str, str, str]], clips: list[dict] | None) -> None:
    """A run folder with manifests/sources.parquet and (unless None) manifests/clips.parquet.

    Args:
        run_dir: Where to write.
        sources: (source_uri, source_id, status) per input.
        clips: Rows with source_id, shot_index, start_frame, end_frame and optionally status.
    """
    manifests = run_dir / "manifests"
    manifests.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist([{"source_uri": u, "source_id": i, "status": s} for u, i, s in sources],
                                        schema=SOURCES_SCHEMA), manifests / "sources.parquet")
    if clips is not None:
        rows = [{"source_id": c["source_id"], "key": f"{c['source_id']}-{c['start_frame'] * 40:08d}",
                 "status": c.get("status", "ok"), "shot_index": c["shot_index"], "start_frame": c["start_frame"],
                 "end_frame": c["end_frame"], "start_s": c["start_frame"] / 25, "end_s": c["end_frame"] / 25}
                for c in clips]
        pq.write_table(pa.Table.from_pylist(rows, schema=CLIPS_SCHEMA), manifests / "clips.parquet")


def clips_from_starts(source_id: str, starts: list[int], n_frames: int) -> list[dict]:
    ends = starts[1:] + [n_frames]
    return [{"source_id": source_id, "shot_index": i, "start_frame": s, "end_frame": e}
            for i, (s, e) in enumerate(zip(starts, ends))]
