"""Ground truth of a realistic video, in the GRID mode's format (docs/synth-format.md).

shots, speaking, turns, stems and mix are written by the same code as in the GRID mode; faces
come from the detected boxes of the recordings; words are empty (no transcripts with times fit
the placed pieces); the dry speech goes to `dry/<person>.flac` beside `stems/`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from voxhear.benchmarks.synth.audio import Soundtrack
from voxhear.benchmarks.synth.script import ON_SCREEN
from voxhear.benchmarks.synth.truth import (
    FACES_SCHEMA,
    WORDS_SCHEMA,
    describe_source,
    video_meta_head,
    write_video_truth,
)
from voxhear.benchmarks.synth.wild import DETECTOR, WORK_MAX_SIDE
from voxhear.benchmarks.synth.wild_mouth import WIDTH_WEIGHT, mean_of
from voxhear.benchmarks.synth.wild_script import WildPlan

# meta.json's `stems` note wherever the dry speech is kept beside the stems (realistic and audio-only sets).
STEMS_NOTE = "reverberant speech as mixed; dry/ holds the same speech before the room"


def write_wild_truth(plan: WildPlan, track: Soundtrack, dry: dict[str, np.ndarray], truth_dir: Path,
                     media_dir: Path) -> None:
    """Write every ground-truth file of one realistic video into `truth_dir` (meta.json last)."""
    write_video_truth(plan, track, truth_dir, pa.Table.from_pylist(wild_face_boxes(plan), schema=FACES_SCHEMA),
                      WORDS_SCHEMA.empty_table(), lambda: wild_meta(plan, track, media_dir), dry)


def sound_meta(plan, person: str) -> dict:
    """A person's level offset and room in meta.json (realistic and audio-only sets)."""
    return {"speech_level_offset_db": round(plan.speech_gain_db[person], 3),
            "rt60_s": round(plan.rt60_s[person], 4), "drr_db": round(plan.drr_db[person], 3)}


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


def listening_meta(plan: WildPlan, person: str) -> dict:
    """How a person's listening frames were chosen (`wild_mouth.py`), and their mouth statistics:
    over the recording's listening and speech frames, and over the frames this video shows while
    the person listens (outside their placed pieces) and inside their pieces (speech and its
    pauses); `step` there is between consecutive output frames."""
    clip = plan.clips[person]
    assert clip.listening is not None and clip.mouths is not None
    shown = plan.source_frame[person]
    mouthing = plan.mouthing[person]

    def over(kind: np.ndarray) -> dict:
        frames = shown[kind]
        steps = kind[1:] & kind[:-1]  # consecutive output frames, both of the kind
        jaw, gap = clip.mouths.jaw_open[frames], clip.mouths.gap[frames]
        step = (np.abs(clip.mouths.gap[shown[1:]] - clip.mouths.gap[shown[:-1]])
                + WIDTH_WEIGHT * np.abs(clip.mouths.width[shown[1:]] - clip.mouths.width[shown[:-1]]))[steps]
        return {"frames": int(kind.sum()), "jaw_open": mean_of(jaw), "lip_gap": mean_of(gap), "step": mean_of(step)}

    return {"tier": clip.listening.tier, "chosen": clip.listening.describe(),
            "n_runs": len(clip.listening.runs), "n_frames": clip.listening.n_frames,
            "recording": clip.listening.stats, "shown_listening": over(~mouthing), "shown_speaking": over(mouthing)}


def wild_meta(plan: WildPlan, track: Soundtrack, media_dir: Path) -> dict:
    people: dict[str, dict] = {}
    for p in ON_SCREEN:
        clip = plan.clips[p]
        assert clip.detected is not None
        people[p] = {**describe_source(clip.path, media_dir), "on_screen": True, "source_fps": clip.fps,
                     "source_size": list(clip.source_size), "working_size": list(clip.work_size),
                     "listening_margin_s": clip.listen_margin_s, "pool_tier": clip.tier,
                     "listening": listening_meta(plan, p),
                     "face_box_source": f"{DETECTOR} per frame",
                     "faces_detected_share": round(float(clip.detected.mean()), 4)}
    if plan.offscreen is not None:
        people["C"] = {**describe_source(plan.offscreen.path, media_dir), "on_screen": False}
    for p in people:
        people[p].update(sound_meta(plan, p))
    return {
        **video_meta_head(plan, people, media_dir, people_source="wild"),
        "mic_noise_dbfs": round(plan.mic_noise_dbfs, 3),
        "stems": STEMS_NOTE,
        "working_max_side": max(WORK_MAX_SIDE, plan.width, plan.height),
        "snr_db_planned": round(plan.snr_db, 3),
        "snr_db": round(track.snr_db, 3),
        "n_shots": len(plan.shots),
        "n_utterances": sum(p.kind == "turn" for p in plan.pieces),
        "n_backchannels": sum(p.kind == "backchannel" for p in plan.pieces),
    }
