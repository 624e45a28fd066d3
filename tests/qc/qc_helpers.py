"""A small, made-up run directory with every kind of row the dashboard must show.

Built in a second from declared manifest schemas, ffmpeg test sources and a real tar shard, so
the QC tests never run the pipeline. Two inputs are kept (A with 3 kept clips and 2 rejected,
B with 2 kept and 1 rejected), one is filtered and one failed. Columns that later stages add
(face quality, talk/listen time) are appended the way a new stage would add them, so the code
under test cannot rely on a fixed column list.
"""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import soundfile as sf
import yaml

from voxhear.manifests import SourceManifestRow, clip_row_type
from voxhear.pipeline.records import ShotRecord

SID_A, SID_B, SID_C, SID_D = "aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb", "cccccccccccccccc", "dddddddddddddddd"
CONFIG = {
    "ingest": {"min_duration_s": 1.0, "max_duration_s": 21600.0, "min_fps": 5.0, "max_fps": 240.0},
    "scene_cut": {"min_shot_s": 1.0},
    "diarization": {"min_speech_s": 0.5},
    "faces": {"min_track_s": 1.0, "min_face_px": 48.0, "max_median_abs_yaw": 60.0, "min_landmark_fraction": 0.5,
              "identity_threshold": 0.5, "detector": "yunet", "embedder": "dlib"},
    "separation": {"backend": "deepfilternet"},
    "asr": {"model": "faster-whisper-tiny.en"},
    # The talk stage has its own face-size bound; it did not run here (its reasons must not be listed).
    "talk": {"min_face_px": 64.0},
}

# key, source, status, stage, reason, start, end, face height, yaw, talk, listen, identity
CLIPS = [
    (f"{SID_A}-face0-00000000", SID_A, "ok", "", "", 0.0, 2.0, 120.0, 5.0, 1.2, 0.8, "face-1"),
    (f"{SID_A}-face0-00002000", SID_A, "ok", "", "", 2.0, 4.0, 110.0, -8.0, 0.5, 1.5, "face-1"),
    (f"{SID_A}-face1-00004000", SID_A, "ok", "", "", 4.0, 5.5, 90.0, 20.0, 0.0, 1.5, "face-2"),
    (f"{SID_A}-face0-00005500", SID_A, "filtered", "faces", "face_too_small", 5.5, 7.0, 30.0, 2.0, 0, 0, ""),
    (f"{SID_A}-face1-00005500", SID_A, "filtered", "faces", "profile_view", 5.5, 7.0, 80.0, 75.0, 0, 0, ""),
    (f"{SID_B}-face0-00000000", SID_B, "ok", "", "", 0.0, 3.0, 140.0, 1.0, 2.0, 1.0, "face-1"),
    (f"{SID_B}-face0-00003000", SID_B, "ok", "", "", 3.0, 5.0, 100.0, -3.0, 1.0, 1.0, "face-3"),
    (f"{SID_B}-00005000", SID_B, "filtered", "scene_cut", "shot_too_short", 5.0, 5.6, float("nan"),
     float("nan"), 0, 0, ""),
]
KEPT = [c[0] for c in CLIPS if c[2] == "ok"]
# The one sample whose shard also holds a separated stem (as the audio stages will write).
STEM_KEY = KEPT[0]


def _ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", *args], check=True)


def _flac(seconds: float, freq: float) -> bytes:
    t = np.arange(int(16000 * seconds)) / 16000
    buffer = io.BytesIO()
    sf.write(buffer, (0.2 * np.sin(2 * np.pi * freq * t)).astype(np.float32), 16000, format="FLAC")
    return buffer.getvalue()


def build_run(run_dir: Path, media_dir: Path) -> Path:
    run_dir.mkdir(parents=True)
    media_dir.mkdir(parents=True, exist_ok=True)
    video = media_dir / "clip.mp4"
    _ffmpeg("-f", "lavfi", "-i", "testsrc=size=128x128:rate=25", "-t", "2", "-c:v", "libx264", "-preset",
            "ultrafast", "-pix_fmt", "yuv420p", "-movflags", "+faststart", str(video))
    background = media_dir / "background.wav"
    sf.write(background, np.random.default_rng(0).normal(0, 0.05, 16000 * 8).astype(np.float32), 16000)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(CONFIG))

    def source(uri: str, sid: str, status: str, stage: str = "", reason: str = "", message: str = "",
               duration: float = 8.0, **extra) -> SourceManifestRow:
        row = SourceManifestRow(source_uri=uri, source_id=sid, duration_s=duration, fps=25.0, width=640,
                                height=360, **extra)
        row.status, row.stage, row.reason, row.error_message = status, stage, reason, message
        return row

    sources = [
        source("/data/in/a.mp4", SID_A, "ok", wall_s={"ingest": 2.0, "faces": 8.0},
               cpu_s={"ingest": 1.0, "faces": 6.0}, background_uri=str(background), n_clips_ok=3),
        source("/data/in/b.mp4", SID_B, "ok", duration=6.0, wall_s={"ingest": 1.0, "faces": 4.0},
               cpu_s={"ingest": 0.5, "faces": 3.0}, n_clips_ok=2),
        source("/data/in/c.mp4", SID_C, "filtered", "ingest", "no_audio_stream", "c.mp4 has no audio stream",
               wall_s={"ingest": 0.5}, cpu_s={"ingest": 0.2}),
        source("/data/in/d.mp4", SID_D, "failed", "ingest", "probe_failed", "ffprobe cannot read d.mp4",
               duration=0.0, wall_s={"ingest": 0.1}, cpu_s={"ingest": 0.1}),
    ]
    manifests = run_dir / "manifests"
    manifests.mkdir()
    pq.write_table(SourceManifestRow.to_table(sources), manifests / "sources.parquet")

    row_type = clip_row_type(ShotRecord)
    rows = []
    for i, (key, sid, status, stage, reason, start, end, *_rest) in enumerate(CLIPS):
        uri = "/data/in/a.mp4" if sid == SID_A else "/data/in/b.mp4"
        row = row_type(source_uri=uri, source_id=sid, key=key, shot_index=i, start_s=start, end_s=end,
                       duration_s=8.0, shard="000000.tar" if status == "ok" else "",
                       background_uri=str(background) if sid == SID_A else "",
                       segment_video_uri=str(video) if reason == "profile_view" else "")
        row.status, row.stage, row.reason = status, stage, reason
        row.error_message = f"{reason} rejected it" if reason else ""
        rows.append(row)
    table = row_type.to_table(rows)
    # What a face stage and a talk/listen stage add: new numeric columns.
    extra = {
        "track_index": pa.array([0 if c[4] != "shot_too_short" else -1 for c in CLIPS], pa.int64()),
        "track_start_s": pa.array([c[5] for c in CLIPS]), "track_end_s": pa.array([c[6] for c in CLIPS]),
        "face_height_px": pa.array([c[7] for c in CLIPS]), "yaw_deg": pa.array([c[8] for c in CLIPS]),
        "talk_s": pa.array([float(c[9]) for c in CLIPS]), "listen_s": pa.array([float(c[10]) for c in CLIPS]),
        "identity_id": pa.array([""] * len(CLIPS)),
    }
    for name, column in extra.items():
        table = table.append_column(name, column)
    pq.write_table(table, manifests / "clips.parquet")
    identities = pa.table({"key": [c[0] for c in CLIPS if c[11]], "source_id": [c[1] for c in CLIPS if c[11]],
                           "identity_id": [c[11] for c in CLIPS if c[11]]})
    pq.write_table(identities, manifests / "identities.parquet")

    shards = run_dir / "shards"
    shards.mkdir()
    video_bytes = video.read_bytes()
    with tarfile.open(shards / "000000.tar", "w") as tar:
        for key in KEPT:
            members = {"mp4": video_bytes, "flac": _flac(2.0, 330.0),
                       "json": json.dumps({"key": key}).encode()}
            if key == STEM_KEY:
                members["background.flac"] = _flac(2.0, 110.0)
            for ext, data in members.items():
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return run_dir
