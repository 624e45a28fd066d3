"""Stand-in stages for the reliability tests, registered in place of the real ones.

The commit protocol (sink, ledger, consolidation, end-of-run passes) does not care what the stages
compute, so the tests that kill a run at every one of its filesystem steps use stages that make
their samples in microseconds from small text "videos": `SYNTH shots=N identity=I` (anything else
fails like a broken video). `synthetic_registry` swaps them in as `ingest`, `shot_media`, `faces`
and `talk`, so the real runner runs the identity and splits passes over them.

`KillOnce` is a pass-through stage to add after the real shot stages under the Ray runner: the
first time it sees the row it is told to, it kills its own worker process with SIGKILL (or it holds
every row until a file exists, to keep a run going).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from voxhear.pipeline import registry
from voxhear.pipeline.records import ClipRecord, ShotRecord, SourceRecord, sample_key
from voxhear.pipeline.settings import setting
from voxhear.pipeline.stage import InputError, Stage

MODULE = __name__
SYNTHETIC_STAGES = (f"{MODULE}:FakeIngest", f"{MODULE}:FakeShots", f"{MODULE}:FakeFaces", f"{MODULE}:FakeTalk")
PLAIN = "stages=[ingest, shot_media]"
TALK = "stages=[ingest, shot_media, faces, talk]"
_HEADER = re.compile(rb"^SYNTH shots=(\d+) identity=(\d+)")


def synthetic_video(path: Path, shots: int, identity: int) -> Path:
    """A stand-in input: `shots` one-second shots of one person (`identity`, 0-7)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"SYNTH shots={shots} identity={identity} name={path.name}\n")
    return path


def use_synthetic_stages(monkeypatch) -> None:
    """The stand-in stages in the registry, and fsync a no-op: it guards against power loss, which a
    killed process is not (its writes are in the page cache), and it is half of a small run's time."""
    monkeypatch.setattr(registry, "STAGES", SYNTHETIC_STAGES)
    monkeypatch.setattr(os, "fsync", lambda fd: None)


@dataclass(slots=True)
class SyntheticShot(ShotRecord):
    def shard_members(self) -> dict[str, bytes]:
        payload = hashlib.sha256(self.key.encode()).hexdigest().encode() * 8
        return {"json": json.dumps(self.sample_metadata(), sort_keys=True).encode(), "txt": payload}


@dataclass(slots=True)
class SyntheticClip(ClipRecord):
    def shard_members(self) -> dict[str, bytes]:
        payload = hashlib.sha256(self.key.encode()).hexdigest().encode() * 8
        return {"json": json.dumps(self.sample_metadata(), sort_keys=True).encode(), "txt": payload}


@dataclass
class FakeIngestConfig:
    threads: int = setting(1, ge=1)


class FakeIngest(Stage[SourceRecord, SourceRecord]):
    name = "ingest"
    input_type = SourceRecord
    output_type = SourceRecord
    config_class = FakeIngestConfig

    def process(self, row: SourceRecord) -> list[SourceRecord]:
        data = Path(row.source_uri).read_bytes()
        match = _HEADER.match(data)
        if match is None:
            raise InputError("probe_failed", f"{row.source_uri} is not a synthetic video")
        row.source_id = hashlib.sha256(data).hexdigest()[:16]
        row.n_frames = int(match.group(1)) * 25
        row.norm_fps = 25.0
        row.duration_s = float(match.group(1))
        row.video_uri = row.source_uri
        return [row]


class FakeShots(Stage[SourceRecord, ShotRecord]):
    name = "shot_media"
    input_type = SourceRecord
    output_type = SyntheticShot
    requires = ("ingest",)

    def process(self, row: SourceRecord) -> list[SyntheticShot]:
        shots = row.n_frames // 25
        return [
            SyntheticShot.from_parent(
                row,
                shot_index=i,
                n_shots=shots,
                start_frame=25 * i,
                end_frame=25 * (i + 1),
                start_s=float(i),
                end_s=float(i + 1),
                key=sample_key(row.source_id, 1000 * i),
            )
            for i in range(shots)
        ]


@dataclass
class FakeFacesConfig:
    identity_threshold: float = setting(0.47, gt=0)


class FakeFaces(Stage[ShotRecord, ShotRecord]):
    """Nothing to do: `faces` in `stages` makes the runner cluster identities after the run."""

    name = "faces"
    input_type = ShotRecord
    output_type = SyntheticShot
    config_class = FakeFacesConfig
    requires = ("shot_media",)

    def process(self, row: ShotRecord) -> list[ShotRecord]:
        return [row]


class FakeTalk(Stage[ShotRecord, ClipRecord]):
    """One clip per shot, the face's embedding a one-hot of the video's identity."""

    name = "talk"
    input_type = ShotRecord
    output_type = SyntheticClip
    requires = ("faces",)

    def process(self, row: ShotRecord) -> list[SyntheticClip]:
        match = _HEADER.match(Path(row.source_uri).read_bytes())
        assert match is not None
        embedding = [0.0] * 8
        embedding[int(match.group(2)) % 8] = 1.0
        return [
            SyntheticClip.from_parent(
                row,
                key=sample_key(row.source_id, round(row.start_s * 1000), "face0"),
                track_index=0,
                n_tracks=1,
                track_start_frame=row.start_frame,
                track_end_frame=row.end_frame,
                track_start_s=row.start_s,
                track_end_s=row.end_s,
                embedding=embedding,
                clip_index=0,
                n_clips=1,
                clip_start_frame=row.start_frame,
                clip_end_frame=row.end_frame,
                clip_start_s=row.start_s,
                clip_end_s=row.end_s,
            )
        ]


# ---------------------------------------------------------------- a worker that dies under Ray


@dataclass
class KillOnceConfig:
    # Where the stage records the worker it killed (one file per kill); "" never kills.
    marker_dir: str = ""
    # Kill the worker holding this shot of the first source it sees with it.
    shot_index: int = setting(1, ge=0)
    # Run as an actor pool (like a model stage) instead of as tasks.
    actor: bool = False
    # Hold every row until this file exists ("" holds nothing); `holding` is created beside it meanwhile.
    hold_until: str = ""


class KillOnce(Stage[ShotRecord, ShotRecord]):
    name = "kill_once"
    input_type = ShotRecord
    output_type = ShotRecord
    config_class = KillOnceConfig
    requires = ("shot_media",)

    config: KillOnceConfig

    def __init__(self, config: KillOnceConfig, context) -> None:
        super().__init__(config, context)
        self.uses_models = config.actor

    def process(self, row: ShotRecord) -> list[ShotRecord]:
        if self.config.hold_until:
            gate = Path(self.config.hold_until)
            (gate.parent / "holding").touch()
            deadline = time.monotonic() + 120
            while not gate.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
        if self.config.marker_dir and row.shot_index == self.config.shot_index:
            marker = Path(self.config.marker_dir) / "killed"
            try:
                with open(marker, "x") as handle:  # exactly one worker ever dies
                    handle.write(f"{os.getpid()} {row.key}\n")
            except FileExistsError:
                return [row]
            os.kill(os.getpid(), signal.SIGKILL)
        return [row]
