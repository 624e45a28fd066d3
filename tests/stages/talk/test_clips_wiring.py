"""Two talk-stage rules checked where they act: in `TalkStage.process` / `_clips`, not only in
their helpers.

`attribution.split_between_faces` (talk.split_voices_between_faces) and
`windows.overlap_split_windows` (talk.overlap_split_s) have unit tests of their own
(test_talk_parts.py, test_windows.py); these tests check that the stage calls them, with its
config, on the way from a face track to its clip records. Nothing is faked in the rules: the
inputs are the files the stage reads (the face stage's frame arrays, the diarization RTTM, the
16 kHz mix and speech stems), and Light-ASD's smoothed logits are put in the stage's per-run
score cache (work/<source>/talk/<track key>.asd.npy), where a second face of the shot would find
them, so no model runs. Only the clip video cut (ffmpeg, after filtering) is replaced, by a
recorder of the windows that reach it: it is called for the kept clips alone.
"""

from __future__ import annotations

import numpy as np

from voxhear.pipeline.records import (
    STATE_BOTH,
    STATE_LISTEN,
    STATE_SILENCE,
    STATE_TALK,
    STATUS_FILTERED,
    ClipRecord,
    FaceTrackRecord,
)
from voxhear.pipeline.stage import RunContext
from voxhear.stages.audio.diarization import Turn, rttm_text
from voxhear.stages.talk.attribution import SAID_BY
from voxhear.stages.talk.config import TalkConfig
from voxhear.stages.talk.stage import TalkStage
from voxhear.stages.talk.tracks import write_int24

FPS = 25.0
RATE = 16000
N = 250  # every track here: source frames 0-249, 10 s
TALKING, STILL = 3.0, -1.0  # Light-ASD logits of a face that talks / listens
FACE0, FACE1 = "v-face0-00000000", "v-face1-00000000"


# ---------------------------------------------------------------------------------------------
# Inputs, in the formats the stage reads.


def _face_arrays(path, n: int = N) -> None:
    """A face stage `.npz` of a frontal, sharp, well-meshed 100 px face, so no quality rule but
    the ones under test can filter its clips."""
    np.savez_compressed(
        path,
        frame=np.arange(n, dtype=np.int32),
        box=np.tile(np.array([100, 100, 200, 200], np.float32), (n, 1)),
        crop_box=np.tile(np.array([50, 50, 250, 250], np.float32), (n, 1)),
        has_landmarks=np.ones(n, bool),
        landmarks=np.zeros((n, 478, 3), np.float32),
        blendshapes=np.zeros((n, 52), np.float32),
        blendshape_names=np.array([f"b{i}" for i in range(52)]),
        rotation_deg=np.zeros((n, 3), np.float32),
        translation=np.zeros((n, 3), np.float32),
        confidence=np.full(n, 0.9, np.float32),
        embedding=np.ones(8, np.float32),
        embeddings=np.ones((2, 8), np.float32),  # one identity: no identity_switch
    )


def _source(tmp_path, turns: list[Turn], scores: dict[str, np.ndarray], run_dir) -> dict[str, FaceTrackRecord]:
    """Face track records (by key) of one shot whose faces are all on screen for the whole
    track, with the audio stages' files, and each face's logits in the run's ASD score cache."""
    media = tmp_path / "media"
    media.mkdir()
    rttm = media / "v.rttm"
    rttm.write_text(rttm_text("v", turns))
    # Mix and speech stem the same loud noise: the background is then what the turn masks leave,
    # far under the speech, so separation_leakage never fires.
    noise = np.random.default_rng(0).integers(-(2**20), 2**20, round(N / FPS * RATE))
    mix, speech = media / "mix.flac", media / "speech.flac"
    write_int24(mix, noise, RATE)
    write_int24(speech, noise, RATE)
    cache = run_dir / "work" / "v" / "talk"
    cache.mkdir(parents=True)
    frames = {}
    for key, face_scores in scores.items():
        frames[key] = media / f"{key}.npz"
        _face_arrays(frames[key])
        np.save(cache / f"{key}.asd.npy", face_scores.astype(np.float32))
    rows = {}
    for index, key in enumerate(scores):
        rows[key] = FaceTrackRecord(
            source_uri=str(media / "v.mp4"), source_id="v", norm_fps=FPS, audio_uri=str(mix),
            speech_uri=str(speech), rttm_uri=str(rttm), start_frame=0, end_frame=N, track_index=index,
            track_start_frame=0, track_end_frame=N, track_end_s=N / FPS, frames_uri=str(frames[key]),
            co_visible_frames_uris=[str(frames[k]) for k in scores if k != key], blur_var=100.0,
        )  # fmt: skip
    return rows


def _logits(talks: list[tuple[float, float]], n: int = N) -> np.ndarray:
    """A face's logits: TALKING over the (start, end) seconds given, STILL elsewhere."""
    scores = np.full(n, STILL)
    for a, b in talks:
        scores[round(a * FPS) : round(b * FPS)] = TALKING
    return scores


# ---------------------------------------------------------------------------------------------
# Running the stage.


def _run(run_dir, row: FaceTrackRecord, monkeypatch, **settings) -> tuple[list[ClipRecord], list[tuple[int, int]]]:
    """The stage's clips of `row` under `settings`, and the track-relative windows of those it
    kept (the ones that reach the video cut)."""
    # No model store: setup() is never called, and a score missing from the cache fails loudly
    # (the stage would try to decode a shot video that is not there) rather than run Light-ASD.
    stage = TalkStage(TalkConfig(**settings), RunContext(run_dir=run_dir, model_store=None))
    cut: list[tuple[int, int]] = []

    def record_cut(clip, track, a, b, n, out_dir, keyframes=frozenset()):
        cut.append((a, b))

    monkeypatch.setattr(stage, "_write_video", record_cut)
    return stage.process(row), cut


def _states(clips: list[ClipRecord]) -> np.ndarray:
    """The track's per-frame states as the clips' frame arrays hold them (clips cover it exactly)."""
    parts = []
    for clip in sorted(clips, key=lambda c: c.clip_start_frame):
        with np.load(clip.clip_frames_uri) as arrays:
            parts.append(arrays["state"])
    return np.concatenate(parts)


def _windows(clips: list[ClipRecord]) -> list[tuple[int, int, str]]:
    """(first frame, end frame, status or filter reason) of each clip."""
    return [
        (c.clip_start_frame, c.clip_end_frame, c.reason if c.status == STATUS_FILTERED else c.status) for c in clips
    ]


def _seconds(states: np.ndarray, code: int) -> list[tuple[float, float]]:
    """The (start, end) seconds of the runs of one state."""
    edges = np.diff(np.concatenate([[0], (states == code).astype(int), [0]]))
    return [(a / FPS, b / FPS) for a, b in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True)]


# ---------------------------------------------------------------------------------------------


def test_a_voice_cluster_said_by_both_faces_of_a_two_shot_is_split_between_them(tmp_path, monkeypatch):
    """talk.split_voices_between_faces: diarization put both people of a two-shot in one cluster
    A; face 0's lips move in A's turns at 0-2 and 4-6 s, face 1's at 2-4 and 6-8 s (8-10 s: nobody
    speaks). With the rule, each face's clip gives it its own turns (talk) and the other face's
    (listen), and names the two halves of A as self and other speaker. Without it, no face
    reaches the threshold over the whole of A (mean logit 1.0 < 1.5): nobody is self, the face's
    talking turns are at best `both`, never talk, and the track gives no clip."""
    run_dir = tmp_path / "run"
    turns = [Turn(0, 2, "A"), Turn(2, 4, "A"), Turn(4, 6, "A"), Turn(6, 8, "A")]
    faces = {FACE0: _logits([(0, 2), (4, 6)]), FACE1: _logits([(2, 4), (6, 8)])}
    rows = _source(tmp_path, turns, faces, run_dir)
    face0, face1 = f"A{SAID_BY}{FACE0}", f"A{SAID_BY}{FACE1}"

    clips, _ = _run(run_dir, rows[FACE0], monkeypatch)
    assert _windows(clips) == [(0, N, "ok")]
    (clip,) = clips
    assert (clip.self_speaker, clip.self_speakers, clip.other_speakers) == (face0, [face0], [face1])
    states = _states(clips)
    assert _seconds(states, STATE_TALK) == [(0, 2), (4, 6)]
    assert _seconds(states, STATE_LISTEN) == [(2, 4), (6, 8)]
    assert _seconds(states, STATE_SILENCE) == [(8, 10)] and not (states == STATE_BOTH).any()
    assert (clip.talk_s, clip.listen_s, clip.both_s) == (4.0, 4.0, 0.0)

    # Face 1's track splits A the same way and sees it from the other side.
    (clip1,) = _run(run_dir, rows[FACE1], monkeypatch)[0]
    assert (clip1.self_speakers, clip1.other_speakers) == ([face1], [face0])
    assert _seconds(_states([clip1]), STATE_TALK) == [(2, 4), (6, 8)]

    # Off: the cluster stays whole, nobody is self, and face 0's own turns are only `both` (its
    # lips move in another speaker's turns: the lip overlap rule). A's mean logit of 1.0 lies
    # within asd_band of the threshold, so every clip of the track is filtered as ambiguous.
    off, off_kept = _run(run_dir, rows[FACE0], monkeypatch, split_voices_between_faces=False)
    assert all(c.self_speakers == [] and c.other_speakers == ["A"] for c in off)
    off_states = _states(off)
    assert not (off_states == STATE_TALK).any()
    assert _seconds(off_states, STATE_BOTH) == [(0, 2), (4, 6)]
    assert {c.reason for c in off} == {"ambiguous_speaker"} and off_kept == []


def test_a_window_rejected_for_its_overlap_is_cut_so_its_clean_turns_are_kept(tmp_path, monkeypatch):
    """talk.overlap_split_s: A (this face) and B both talk at 0-4 s, then take turns cleanly
    (A 4-6, B 6-8, A 8-10 s). The one 10 s window has 40% of its speech overlapped, over
    talk.max_overlap_share = 0.3. With the rule the stage cuts it at the end of the 4 s stretch:
    the stretch is a clip filtered for its overlap, and the 6 s of clean turns a clip that is
    kept. With the rule off (None) the whole window is filtered and nothing is kept."""
    run_dir = tmp_path / "run"
    turns = [Turn(0, 4, "A"), Turn(0, 4, "B"), Turn(4, 6, "A"), Turn(6, 8, "B"), Turn(8, 10, "A")]
    # The face talks in the overlap and in A's turns, and is still in B's: A is this face.
    rows = _source(tmp_path, turns, {FACE0: _logits([(0, 6), (8, 10)])}, run_dir)

    clips, kept = _run(run_dir, rows[FACE0], monkeypatch)
    assert all(c.self_speakers == ["A"] for c in clips)  # attribution as intended, so only overlap decides
    assert _windows(clips) == [(0, 100, "overlap_too_high"), (100, N, "ok")]
    assert kept == [(100, N)]
    assert [c.overlap_share for c in clips] == [1.0, 0.0]
    assert _seconds(_states(clips), STATE_BOTH) == [(0, 4)]

    # Off: the same track is one window, and the filter rejects it whole for its overlap.
    off, off_kept = _run(run_dir, rows[FACE0], monkeypatch, overlap_split_s=None)
    assert _windows(off) == [(0, N, "overlap_too_high")]
    assert off_kept == []
    assert off[0].overlap_share == 0.4
