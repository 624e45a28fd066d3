"""Ground truth of a composed video: declared schemas and the writers of `truth/<video_id>/`.

The format is documented in docs/synth-format.md; keep the two in step.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import soundfile as sf

from voxhear.pipeline.io import atomic_path, atomic_write_text
from voxhear.benchmarks.synth import geometry
from voxhear.benchmarks.synth.audio import Soundtrack, speech_segments
from voxhear.benchmarks.synth.options import SAMPLE_RATE
from voxhear.benchmarks.synth.script import ON_SCREEN, VideoPlan
from voxhear.benchmarks.synth.sources import credit_of, licence_of, media_relative

FORMAT_VERSION = 1

SHOTS_SCHEMA = pa.schema([
    pa.field("shot_index", pa.int32(), nullable=False),
    pa.field("start_frame", pa.int32(), nullable=False),
    pa.field("end_frame", pa.int32(), nullable=False),  # exclusive
    pa.field("start_s", pa.float64(), nullable=False),
    pa.field("end_s", pa.float64(), nullable=False),
    pa.field("kind", pa.string(), nullable=False),  # "A", "B" or "two_shot"
    pa.field("people", pa.list_(pa.string()), nullable=False),
])

FACES_SCHEMA = pa.schema([
    pa.field("frame", pa.int32(), nullable=False),
    pa.field("person_id", pa.string(), nullable=False),
    pa.field("shot_index", pa.int32(), nullable=False),
    pa.field("x1", pa.float32(), nullable=False),
    pa.field("y1", pa.float32(), nullable=False),
    pa.field("x2", pa.float32(), nullable=False),
    pa.field("y2", pa.float32(), nullable=False),
    pa.field("source_frame", pa.int32(), nullable=False),  # frame of the GRID clip shown
])

SPEAKING_SCHEMA = pa.schema([
    pa.field("frame", pa.int32(), nullable=False),
    pa.field("person_id", pa.string(), nullable=False),
    pa.field("speaking", pa.bool_(), nullable=False),
])

WORDS_SCHEMA = pa.schema([
    pa.field("person_id", pa.string(), nullable=False),
    pa.field("utterance_index", pa.int32(), nullable=False),
    pa.field("word_index", pa.int32(), nullable=False),
    pa.field("word", pa.string(), nullable=False),
    # No source gives word times; kept as columns so that a future source with times fits.
    pa.field("start_s", pa.float64(), nullable=True),
    pa.field("end_s", pa.float64(), nullable=True),
    # The placed stretch of recording the word lies in.
    pa.field("segment_start_s", pa.float64(), nullable=False),
    pa.field("segment_end_s", pa.float64(), nullable=False),
])


def write_truth(plan: VideoPlan, track: Soundtrack, truth_dir: Path, media_dir: Path) -> None:
    """Write every ground-truth file of one video into `truth_dir` (meta.json last)."""
    write_video_truth(plan, track, truth_dir, faces_table(plan), words_table(plan),
                      lambda: meta(plan, track, media_dir))


def write_video_truth(plan, track: Soundtrack, truth_dir: Path, faces: pa.Table, words: pa.Table,
                      meta_of: Callable[[], dict], dry: dict[str, np.ndarray] | None = None) -> None:
    """The truth files of a video of either mode, in the one format: audio, shots, the mode's
    `faces` and `words`, speaking and turns by the talking rule, and meta.json (`meta_of()`)
    last, so that a folder with meta.json is complete."""
    truth_dir.mkdir(parents=True, exist_ok=True)
    write_audio(track, truth_dir, dry)
    segments = speech_segments(track)
    _write_table(truth_dir / "shots.parquet", shots_table(plan))
    _write_table(truth_dir / "faces.parquet", faces)
    _write_table(truth_dir / "speaking.parquet", speaking_table(plan, segments))
    _write_table(truth_dir / "words.parquet", words)
    atomic_write_text(truth_dir / "turns.rttm", rttm_text(plan.video_id, segments))
    atomic_write_text(truth_dir / "meta.json", json.dumps(meta_of(), indent=2) + "\n")


def write_audio(track: Soundtrack, truth_dir: Path, dry: dict[str, np.ndarray] | None = None) -> None:
    """`stems/<name>.flac`, `mix.flac` and, where given, the dry speech as `dry/<person>.flac`."""
    for name, data in track.stems.items():
        _write_flac(truth_dir / "stems" / f"{name}.flac", data)
    _write_flac(truth_dir / "mix.flac", track.mix)
    for person, data in (dry or {}).items():
        _write_flac(truth_dir / "dry" / f"{person}.flac", data)


def shots_table(plan: VideoPlan) -> pa.Table:
    rows = [{"shot_index": s.index, "start_frame": s.start_frame, "end_frame": s.end_frame,
             "start_s": s.start_frame / plan.fps, "end_s": s.end_frame / plan.fps,
             "kind": s.kind, "people": list(s.people)} for s in plan.shots]
    return pa.Table.from_pylist(rows, schema=SHOTS_SCHEMA)


def face_boxes(plan: VideoPlan) -> list[dict]:
    """One row per frame and visible person: the annotated source box under the frame's transform."""
    rows = []
    for shot in plan.shots:
        for frame in range(shot.start_frame, shot.end_frame):
            u = geometry.shot_progress(shot, frame)
            slot = plan.slot_of_frame(frame)
            for placement in shot.placements:
                person = placement.person_id
                box = plan.clips[person].face_box
                x1, y1, x2, y2 = geometry.apply(geometry.transform_at(placement, u, box), box)
                rows.append({"frame": frame, "person_id": person, "shot_index": shot.index,
                             "x1": x1, "y1": y1, "x2": x2, "y2": y2,
                             "source_frame": int(plan.source_frame[person][slot])})
    return rows


def faces_table(plan: VideoPlan) -> pa.Table:
    return pa.Table.from_pylist(face_boxes(plan), schema=FACES_SCHEMA)


def speaking_at_frames(plan: VideoPlan, segments: dict[str, list[tuple[int, int]]]) -> dict[str, np.ndarray]:
    """Per person, whether they speak at each output frame's midpoint (the VAD rule)."""
    mids = np.floor((np.arange(plan.n_frames) + 0.5) / plan.fps * SAMPLE_RATE).astype(np.int64)
    out = {}
    for person, segs in segments.items():
        flag = np.zeros(plan.n_frames, dtype=bool)
        for start, end in segs:
            flag |= (mids >= start) & (mids < end)
        out[person] = flag
    return out


def speaking_table(plan: VideoPlan, segments: dict[str, list[tuple[int, int]]]) -> pa.Table:
    flags = speaking_at_frames(plan, segments)
    rows = [{"frame": frame, "person_id": person, "speaking": bool(flags[person][frame])}
            for shot in plan.shots for frame in range(shot.start_frame, shot.end_frame)
            for person in shot.people]
    return pa.Table.from_pylist(rows, schema=SPEAKING_SCHEMA)


def words_table(plan: VideoPlan) -> pa.Table:
    rows = []
    for index, u in enumerate(plan.utterances):
        for k, word in enumerate(u.words):
            rows.append({"person_id": u.person_id, "utterance_index": index, "word_index": k,
                         "word": word, "start_s": None, "end_s": None,
                         "segment_start_s": u.start_sample / SAMPLE_RATE,
                         "segment_end_s": u.end_sample / SAMPLE_RATE})
    return pa.Table.from_pylist(rows, schema=WORDS_SCHEMA)


def rttm_text(video_id: str, segments: dict[str, list[tuple[int, int]]]) -> str:
    """NIST RTTM: one SPEAKER line per speech segment per person, sorted by onset."""
    lines = sorted((start, person, end) for person, segs in segments.items() for start, end in segs)
    return "".join(f"SPEAKER {video_id} 1 {s / SAMPLE_RATE:.3f} {(e - s) / SAMPLE_RATE:.3f} "
                   f"<NA> <NA> {p} <NA> <NA>\n" for s, p, e in lines)


def describe_source(path: Path, media_dir: Path) -> dict:
    """Where a recording of the media folder came from, for meta.json (`people`, `background`)."""
    lic = licence_of(path)
    return {"source": media_relative(path, media_dir), "corpus": lic.corpus, "licence": lic.licence,
            "origin": lic.origin, "credit": credit_of(path)}


def background_meta(plan, media_dir: Path) -> dict:
    """meta.json's `background` (every mode): the recording, where the video's stretch starts in
    it, and whether it had to loop."""
    return {**describe_source(plan.background.path, media_dir),
            "offset_s": plan.background_offset / SAMPLE_RATE,
            "looped": len(plan.background.audio) < plan.background_offset + plan.n_samples}


def video_meta_head(plan, people: dict, media_dir: Path, **mode_fields) -> dict:
    """The fields meta.json of a video starts with in every video mode, in the format's order; the
    mode's own `mode_fields` (the realistic mode's ``people_source``) follow the seed."""
    return {
        "format_version": FORMAT_VERSION,
        "video_id": plan.video_id,
        "seed": plan.seed,
        **mode_fields,
        "fps": plan.fps,
        "width": plan.width,
        "height": plan.height,
        "n_frames": plan.n_frames,
        "duration_s": plan.n_samples / SAMPLE_RATE,
        "sample_rate": SAMPLE_RATE,
        "people": people,
        "background": background_meta(plan, media_dir),
    }


def meta(plan: VideoPlan, track: Soundtrack, media_dir: Path) -> dict:
    people = {p: {**describe_source(plan.clips[p].path, media_dir), "on_screen": True,
                  "face_box_source": list(plan.clips[p].face_box)} for p in ON_SCREEN}
    if plan.offscreen is not None:
        people["C"] = {**describe_source(plan.offscreen.path, media_dir), "on_screen": False}
    for p, gain in plan.speech_gain_db.items():
        if p in people:
            people[p]["speech_level_offset_db"] = round(gain, 3)
    return {
        **video_meta_head(plan, people, media_dir),
        "snr_db_planned": round(plan.snr_db, 3),
        "snr_db": round(track.snr_db, 3),
        "n_shots": len(plan.shots),
        "n_utterances": len(plan.utterances),
    }



def _write_table(path: Path, table: pa.Table) -> None:
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def _write_flac(path: Path, data: np.ndarray) -> None:
    """24-bit FLAC; `data` holds 24-bit integers in int32."""
    with atomic_path(path) as tmp:
        # soundfile scales int32 input to the 24-bit file by dropping the low byte: shift up first.
        sf.write(tmp, (data.astype(np.int32) << 8), SAMPLE_RATE, subtype="PCM_24", format="FLAC")
