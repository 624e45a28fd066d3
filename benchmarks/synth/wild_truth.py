"""Ground truth of a realistic video, in the GRID mode's format (docs/synth-format.md).

shots, speaking, turns, stems and mix are written by the same code as in the GRID mode; faces
come from the detected boxes of the recordings; words are empty (no transcripts with times fit
the placed pieces); the dry speech goes to `dry/<person>.flac` beside `stems/`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa

from voxhear.benchmarks.synth.audio import Soundtrack, speech_segments
from voxhear.benchmarks.synth.options import SAMPLE_RATE
from voxhear.benchmarks.synth.script import ON_SCREEN
from voxhear.benchmarks.synth.sources import credit_of, licence_of, media_relative
from voxhear.benchmarks.synth.truth import (
    FACES_SCHEMA,
    FORMAT_VERSION,
    WORDS_SCHEMA,
    _write_flac,
    _write_table,
    rttm_text,
    shots_table,
    speaking_table,
    write_audio,
)
from voxhear.benchmarks.synth.wild import DETECTOR, WORK_MAX_SIDE
from voxhear.benchmarks.synth.wild_script import WildPlan
from voxhear.pipeline.io import atomic_write_text


def write_wild_truth(plan: WildPlan, track: Soundtrack, dry: dict[str, np.ndarray], truth_dir: Path,
                     media_dir: Path) -> None:
    """Write every ground-truth file of one realistic video into `truth_dir` (meta.json last)."""
    truth_dir.mkdir(parents=True, exist_ok=True)
    write_audio(track, truth_dir)
    for person, data in dry.items():
        _write_flac(truth_dir / "dry" / f"{person}.flac", data)
    segments = speech_segments(track)
    _write_table(truth_dir / "shots.parquet", shots_table(plan))  # type: ignore[arg-type]
    _write_table(truth_dir / "faces.parquet", pa.Table.from_pylist(wild_face_boxes(plan), schema=FACES_SCHEMA))
    _write_table(truth_dir / "speaking.parquet", speaking_table(plan, segments))  # type: ignore[arg-type]
    _write_table(truth_dir / "words.parquet", WORDS_SCHEMA.empty_table())
    atomic_write_text(truth_dir / "turns.rttm", rttm_text(plan.video_id, segments))
    atomic_write_text(truth_dir / "meta.json", json.dumps(wild_meta(plan, track, media_dir), indent=2) + "\n")


def wild_face_boxes(plan: WildPlan) -> list[dict]:
    """One row per frame and visible person: the box detected in the recording frame shown, mapped
    through that frame's framing (scale and shift), clipped to what the region shows of it."""
    rows = []
    for shot in plan.shots:
        for frame in range(shot.start_frame, shot.end_frame):
            for framing in shot.placements:
                person = framing.person_id
                clip = plan.clips[person]
                assert clip.boxes is not None
                source = int(plan.source_frame[person][frame])
                x1, y1, x2, y2 = framing.box_on_canvas(clip.boxes[source], clip.work_size)
                rows.append({"frame": frame, "person_id": person, "shot_index": shot.index,
                             "x1": x1, "y1": y1, "x2": x2, "y2": y2, "source_frame": source})
    return rows


def wild_meta(plan: WildPlan, track: Soundtrack, media_dir: Path) -> dict:
    def describe(path: Path) -> dict:
        lic = licence_of(path)
        return {"source": media_relative(path, media_dir), "corpus": lic.corpus, "licence": lic.licence,
                "origin": lic.origin, "credit": credit_of(path)}

    people: dict[str, dict] = {}
    for p in ON_SCREEN:
        clip = plan.clips[p]
        assert clip.detected is not None
        people[p] = {**describe(clip.path), "on_screen": True, "source_fps": clip.fps,
                     "source_size": list(clip.source_size), "working_size": list(clip.work_size),
                     "listening_margin_s": clip.listen_margin_s, "pool_tier": clip.tier,
                     "face_box_source": f"{DETECTOR} per frame",
                     "faces_detected_share": round(float(clip.detected.mean()), 4)}
    if plan.offscreen is not None:
        people["C"] = {**describe(plan.offscreen.path), "on_screen": False}
    for p in people:
        people[p].update({"speech_level_offset_db": round(plan.speech_gain_db[p], 3),
                          "rt60_s": round(plan.rt60_s[p], 4), "drr_db": round(plan.drr_db[p], 3)})
    return {
        "format_version": FORMAT_VERSION,
        "video_id": plan.video_id,
        "seed": plan.seed,
        "people_source": "wild",
        "fps": plan.fps,
        "width": plan.width,
        "height": plan.height,
        "n_frames": plan.n_frames,
        "duration_s": plan.n_samples / SAMPLE_RATE,
        "sample_rate": SAMPLE_RATE,
        "people": people,
        "background": {**describe(plan.background.path),
                       "offset_s": plan.background_offset / SAMPLE_RATE,
                       "looped": len(plan.background.audio) < plan.background_offset + plan.n_samples},
        "mic_noise_dbfs": round(plan.mic_noise_dbfs, 3),
        "stems": "reverberant speech as mixed; dry/ holds the same speech before the room",
        "working_max_side": max(WORK_MAX_SIDE, plan.width, plan.height),
        "snr_db_planned": round(plan.snr_db, 3),
        "snr_db": round(track.snr_db, 3),
        "n_shots": len(plan.shots),
        "n_utterances": sum(p.kind == "turn" for p in plan.pieces),
        "n_backchannels": sum(p.kind == "backchannel" for p in plan.pieces),
    }
