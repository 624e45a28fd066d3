"""The talk-stage metrics (talk_listen, attribution, self_other) on hand-made truth and run folders.

The truth video: 40 frames at 25 fps, A and B on screen side by side throughout, C an off-screen
voice. A speaks in frames 10-19 and 30-34, B in 20-29, C in 30-39, so A's state is silence (0-9),
talk (10-19), listen (20-29), both (30-34, with C) and listen (35-39, C alone).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf
from scipy.signal import butter, resample_poly, sosfilt

from voxhear.benchmarks.evaluation import evaluate_run, format_table
from voxhear.benchmarks.evaluation.audio import si_sdr
from voxhear.benchmarks.evaluation.base import EvalSettings
from voxhear.benchmarks.evaluation.data import RunView, TruthSet
from voxhear.benchmarks.evaluation.talk import AttributionMetric, PooledSiSdr, SelfOtherMetric, TalkListenMetric
from voxhear.pipeline.records import STATE_BOTH, STATE_LISTEN, STATE_SILENCE, STATE_TALK, ClipRecord, SourceRecord
from voxhear.benchmarks.synth.truth import FACES_SCHEMA, SHOTS_SCHEMA, SPEAKING_SCHEMA
from .eval_helpers import write_run

FPS = 25.0
RATE = 16000
SPF = 640  # samples per frame
N_FRAMES = 40
WIDTH, HEIGHT = 160, 90
BOXES = {"A": (10.0, 10.0, 50.0, 60.0), "B": (100.0, 10.0, 140.0, 60.0)}
SPEECH = {"A": [(10, 20), (30, 35)], "B": [(20, 30)], "C": [(30, 40)]}  # frame ranges
VIDEO = "synth-0000"


def speaks(person: str, frame: int) -> bool:
    return any(s <= frame < e for s, e in SPEECH[person])


def true_state(person: str, frame: int) -> int:
    own = speaks(person, frame)
    others = any(speaks(p, frame) for p in SPEECH if p != person)
    return STATE_BOTH if own and others else STATE_TALK if own else STATE_LISTEN if others else STATE_SILENCE


def _write_ints(path: Path, ints: np.ndarray, rate: int = RATE) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, (np.asarray(ints, np.int64) << 8).astype(np.int32), rate, subtype="PCM_24")


def _quantize(audio: np.ndarray) -> np.ndarray:
    return np.round(audio * 2 ** 23).astype(np.int64)


def make_stems(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """24-bit integer stems at 16 kHz: band-limited noise (under 4 kHz) where each person speaks."""
    sos = butter(8, 4000, fs=RATE, output="sos")
    stems = {}
    for person, spans in SPEECH.items():
        audio = np.zeros(N_FRAMES * SPF)
        for s, e in spans:
            audio[s * SPF:e * SPF] = 0.1 * sosfilt(sos, rng.standard_normal((e - s) * SPF))
        stems[person] = _quantize(audio)
    stems["background"] = _quantize(0.01 * sosfilt(sos, rng.standard_normal(N_FRAMES * SPF)))
    return stems


def write_truth(root: Path, stems: dict[str, np.ndarray], rate: int = RATE) -> None:
    folder = root / VIDEO
    folder.mkdir(parents=True)
    meta = {"format_version": 1, "video_id": VIDEO, "fps": FPS, "width": WIDTH, "height": HEIGHT,
            "n_frames": N_FRAMES, "duration_s": N_FRAMES / FPS, "sample_rate": rate,
            "people": {"A": {"on_screen": True}, "B": {"on_screen": True}, "C": {"on_screen": False}}}
    (folder / "meta.json").write_text(json.dumps(meta))
    pq.write_table(pa.Table.from_pylist([{"shot_index": 0, "start_frame": 0, "end_frame": N_FRAMES, "start_s": 0.0,
                                          "end_s": N_FRAMES / FPS, "kind": "two_shot", "people": ["A", "B"]}],
                                        schema=SHOTS_SCHEMA), folder / "shots.parquet")
    faces = [{"frame": k, "person_id": p, "shot_index": 0, "x1": b[0], "y1": b[1], "x2": b[2], "y2": b[3],
              "source_frame": k} for k in range(N_FRAMES) for p, b in BOXES.items()]
    pq.write_table(pa.Table.from_pylist(faces, schema=FACES_SCHEMA), folder / "faces.parquet")
    speaking = [{"frame": k, "person_id": p, "speaking": speaks(p, k)} for k in range(N_FRAMES) for p in BOXES]
    pq.write_table(pa.Table.from_pylist(speaking, schema=SPEAKING_SCHEMA), folder / "speaking.parquet")
    (folder / "turns.rttm").write_text("".join(
        f"SPEAKER {VIDEO} 1 {s / FPS:.3f} {(e - s) / FPS:.3f} <NA> <NA> {p} <NA> <NA>\n"
        for p, spans in SPEECH.items() for s, e in spans))
    for name, ints in stems.items():
        if rate == RATE:
            _write_ints(folder / "stems" / f"{name}.flac", ints, rate)
        else:
            _write_ints(folder / "stems" / f"{name}.flac", _quantize(resample_poly(ints / 2 ** 23, rate, RATE)), rate)
    _write_ints(folder / "mix.flac", sum(stems.values()))


def write_talk_run(run_dir: Path, stems: dict[str, np.ndarray], clips: list[dict]) -> None:
    """A run with the talk stage's clip rows and work files.

    Each clip: face ("A"/"B"), start, end, and optionally status, state (predicted codes; default
    the truth), shift (frames -> box x offset), swap (exchange self and other audio), self_error
    (float audio added to self, taken out of background) and mix_error (added to background only).
    """
    work = run_dir / "work"
    track_uris = {}
    for face, box in BOXES.items():
        track_uris[face] = work / f"track-{face}.npz"
        track_uris[face].parent.mkdir(parents=True, exist_ok=True)
        np.savez(track_uris[face], frame=np.arange(N_FRAMES, dtype=np.int32),
                 box=np.tile(np.array(box, np.float32), (N_FRAMES, 1)))
    records = [ClipRecord(source_uri=f"/videos/{VIDEO}.mp4", source_id="src0", status="filtered", shot_index=0,
                          track_index=9, clip_index=-1, key="src0-face9")]  # a track-level row: no clip
    for i, clip in enumerate(clips):
        face, start, end = clip["face"], clip["start"], clip["end"]
        frames = np.arange(start, end, dtype=np.int32)
        boxes = np.tile(np.array(BOXES[face], np.float32), (len(frames), 1))
        for frame, dx in clip.get("shift", {}).items():
            boxes[frame - start, [0, 2]] += dx
        state = np.array(clip.get("state", [true_state(face, k) for k in frames]), np.uint8)
        window = slice(start * SPF, end * SPF)
        own = stems[face][window]
        other = sum(stems[p][window] for p in SPEECH if p != face)
        mix = own + other + stems["background"][window]
        if "self_error" in clip:
            own = own + _quantize(clip["self_error"])
        if clip.get("swap"):
            own, other = other, own
        background = mix - own - other + clip.get("mix_error", 0)
        folder = work / f"clip{i}"
        folder.mkdir(parents=True)
        np.savez(folder / "frames.npz", frame=frames, state=state, box=boxes)
        for name, ints in (("self", own), ("other", other), ("background", background), ("mix", mix)):
            _write_ints(folder / f"{name}.flac", ints)
        records.append(ClipRecord(
            source_uri=f"/videos/{VIDEO}.mp4", source_id="src0", status=clip.get("status", "ok"), shot_index=0,
            start_frame=0, end_frame=N_FRAMES, track_index="AB".index(face), key=f"src0-face{face}-{start * 40:08d}",
            frames_uri=str(track_uris[face]), norm_fps=FPS, norm_width=WIDTH, norm_height=HEIGHT,
            clip_index=i, clip_start_frame=start, clip_end_frame=end, clip_start_s=start / FPS, clip_end_s=end / FPS,
            clip_frames_uri=str(folder / "frames.npz"), self_uri=str(folder / "self.flac"),
            other_uri=str(folder / "other.flac"), background_clip_uri=str(folder / "background.flac"),
            mix_uri=str(folder / "mix.flac"), self_speaker="" if clip.get("no_speaker") else f"S{face}"))
    (run_dir / "manifests").mkdir(parents=True)
    source = SourceRecord(source_uri=f"/videos/{VIDEO}.mp4", source_id="src0", norm_fps=FPS, norm_width=WIDTH,
                          norm_height=HEIGHT)
    pq.write_table(SourceRecord.to_table([source]), run_dir / "manifests" / "sources.parquet")
    pq.write_table(ClipRecord.to_table(records), run_dir / "manifests" / "clips.parquet")


@pytest.fixture
def stems() -> dict[str, np.ndarray]:
    return make_stems(np.random.default_rng(0))


def _evaluate(metric_cls, tmp_path: Path):
    truth = TruthSet.open(tmp_path / "truth")
    return metric_cls(EvalSettings()).evaluate(RunView.open(tmp_path / "run", truth), truth)


def _case(tmp_path: Path, stems: dict[str, np.ndarray], clips: list[dict], truth_rate: int = RATE) -> Path:
    write_truth(tmp_path / "truth", stems, truth_rate)
    write_talk_run(tmp_path / "run", stems, clips)
    return tmp_path


# A's face in two clips: an ok one over frames 0-29 and a filtered one over 30-39.
A_CLIPS = [{"face": "A", "start": 0, "end": 30}, {"face": "A", "start": 30, "end": 40, "status": "filtered"}]


def test_perfect_clips_score_perfectly(tmp_path, stems):
    _case(tmp_path, stems, A_CLIPS + [{"face": "B", "start": 0, "end": 40}])
    talk = _evaluate(TalkListenMetric, tmp_path).summary
    assert talk["clips"] == 3 and talk["ok_clips"] == 2
    assert talk["frames"] == 80 and talk["unmatched_frames"] == 0
    assert talk["macro_f1"] == 1.0 and talk["ok_macro_f1"] == 1.0
    assert [talk[f"{n}_f1"] for n in ("silence", "talk", "listen", "both")] == [1.0] * 4
    # A: 10 silence, 10 talk, 15 listen, 5 both; B: 10 silence, 10 talk, 20 listen (C alone counts too).
    assert talk["confusion"]["listen"] == {"silence": 0, "talk": 0, "listen": 35, "both": 0}
    assert talk["confusion"]["both"]["both"] == 5
    attribution = _evaluate(AttributionMetric, tmp_path)
    assert attribution.summary["attribution"] == 1.0
    assert attribution.summary["speech_frames"] == 30 + 30 and attribution.summary["speech_s"] == 2.4
    assert attribution.per_video[VIDEO]["attribution"] == 1.0

    audio = _evaluate(SelfOtherMetric, tmp_path).summary
    assert audio["clips"] == 3 and audio["mix_max_abs_error"] == 0 and audio["bad_length_clips"] == 0
    assert audio["self_clips"] == 3 and audio["other_clips"] == 3
    for key in ("self_si_sdr_mean", "self_si_sdr_median", "self_si_sdr_total", "other_si_sdr_mean",
                "other_si_sdr_total", "ok_self_si_sdr_mean"):
        assert audio[key] > 100, key
    # The mix as estimate of A's speech is far worse, so the improvement is large.
    assert audio["self_mix_si_sdr_mean"] < 10 and audio["self_si_sdri_mean"] > 90


def test_a_known_confusion_gives_known_f1_and_attribution(tmp_path, stems):
    # Frames 10-14 (talk) predicted silence; frames 20-24 (listen) predicted both.
    wrong = [true_state("A", k) for k in range(30)]
    wrong[10:15] = [STATE_SILENCE] * 5
    wrong[20:25] = [STATE_BOTH] * 5
    _case(tmp_path, stems, [{**A_CLIPS[0], "state": wrong}, A_CLIPS[1]])
    talk = _evaluate(TalkListenMetric, tmp_path).summary
    # silence: P 10/15, R 1; talk: P 1, R 1/2; listen: P 1, R 10/15; both: P 5/10, R 1.
    assert talk["silence_f1"] == pytest.approx(0.8)
    assert talk["talk_f1"] == pytest.approx(2 / 3, abs=1e-6)
    assert talk["listen_f1"] == pytest.approx(0.8)
    assert talk["both_f1"] == pytest.approx(2 / 3, abs=1e-6)
    assert talk["macro_f1"] == pytest.approx((0.8 + 2 / 3 + 0.8 + 2 / 3) / 4, abs=1e-6)
    assert talk["accuracy"] == pytest.approx(30 / 40)
    assert talk["confusion"]["talk"] == {"silence": 5, "talk": 5, "listen": 0, "both": 0}
    # The ok clip alone has no true "both": macro over silence, talk, listen (listen: P 1, R 1/2).
    assert talk["ok_classes"] == ["silence", "talk", "listen"]
    assert talk["ok_macro_f1"] == pytest.approx((0.8 + 2 / 3 + 2 / 3) / 3, abs=1e-6)
    assert talk["ok_both_f1"] == 0.0  # predicted but never true
    attribution = _evaluate(AttributionMetric, tmp_path).summary
    # 30 speech frames: 5 missed (talk -> silence), 5 partial (listen -> both), 20 right.
    assert attribution["attribution"] == pytest.approx(2 / 3, abs=1e-6)
    assert attribution["missed_share"] == pytest.approx(1 / 6, abs=1e-6)
    assert attribution["partial_share"] == pytest.approx(1 / 6, abs=1e-6)
    assert attribution["swapped_share"] == 0.0
    assert attribution["ok_attribution"] == pytest.approx(10 / 20)


def test_swapping_self_and_other_scores_zero_attribution(tmp_path, stems):
    swapped = [{STATE_TALK: STATE_LISTEN, STATE_LISTEN: STATE_TALK}.get(true_state("A", k), true_state("A", k))
               for k in range(30)]
    _case(tmp_path, stems, [{**A_CLIPS[0], "state": swapped, "swap": True}])
    attribution = _evaluate(AttributionMetric, tmp_path).summary
    assert attribution["attribution"] == 0.0 and attribution["swapped_share"] == 1.0
    assert _evaluate(TalkListenMetric, tmp_path).summary["talk_f1"] == 0.0
    audio = _evaluate(SelfOtherMetric, tmp_path).summary
    # Independent signals: the other person's speech says nothing about A's.
    assert audio["self_si_sdr_mean"] < -10 and audio["other_si_sdr_mean"] < -10
    assert audio["mix_max_abs_error"] == 0


def test_frames_without_a_matching_face_are_counted_not_scored(tmp_path, stems):
    # Frames 0-4 off by 25 px (IoU 15/65 < 0.5), frame 5 off by 10 px (IoU 30/50 = 0.6: matched).
    # Frames 0-4 are wrongly predicted too, which must not count.
    state = [true_state("A", k) for k in range(30)]
    state[0:5] = [STATE_TALK] * 5
    shift = {k: 25.0 for k in range(5)} | {5: 10.0}
    _case(tmp_path, stems, [{**A_CLIPS[0], "state": state, "shift": shift}])
    talk = _evaluate(TalkListenMetric, tmp_path).summary
    assert talk["unmatched_frames"] == 5 and talk["frames"] == 25
    assert talk["macro_f1"] == 1.0
    # A box sitting on B instead of A is matched to B: its state is B's.
    _case(tmp_path / "b", stems, [{**A_CLIPS[0], "shift": {k: 90.0 for k in range(10, 20)}}])
    talk = _evaluate(TalkListenMetric, tmp_path / "b").summary
    assert talk["confusion"]["listen"]["talk"] == 10  # B listens while A (whom we predicted) talks
    assert talk["unmatched_frames"] == 0


def test_self_other_si_sdr_of_a_known_error_and_skipped_references(tmp_path, stems):
    # A's self track gets an error 20 dB under A's speech, orthogonal to it; background takes it back.
    rng = np.random.default_rng(3)
    reference = stems["A"][:30 * SPF] / 2 ** 23
    error = rng.standard_normal(30 * SPF)
    error -= error.dot(reference) / reference.dot(reference) * reference
    error *= np.sqrt(reference.dot(reference) / error.dot(error)) * 0.1
    # B's clip over frames 0-19: B never speaks there, so its self reference is silent.
    _case(tmp_path, stems, [{**A_CLIPS[0], "self_error": error}, {"face": "B", "start": 0, "end": 20}])
    result = _evaluate(SelfOtherMetric, tmp_path)
    audio = result.summary
    assert audio["self_clips"] == 1 and audio["self_skipped"] == 1
    assert audio["other_clips"] == 2 and audio["other_skipped"] == 0
    assert audio["self_si_sdr_mean"] == pytest.approx(20.0, abs=0.05)
    assert audio["self_si_sdr_median"] == audio["self_si_sdr_mean"] == pytest.approx(audio["self_si_sdr_total"],
                                                                                      abs=0.01)
    assert audio["self_si_sdri_mean"] == pytest.approx(audio["self_si_sdr_mean"] - audio["self_mix_si_sdr_mean"],
                                                       abs=0.002)
    assert audio["mix_max_abs_error"] == 0
    assert result.per_video[VIDEO]["self_skipped"] == 1


def test_mix_inconsistency_and_wrong_lengths_are_reported(tmp_path, stems):
    error = np.zeros(30 * SPF, np.int64)
    error[100] = -3
    _case(tmp_path, stems, [{**A_CLIPS[0], "mix_error": error}])
    audio = _evaluate(SelfOtherMetric, tmp_path).summary
    assert audio["mix_max_abs_error"] == 3 * 256  # int32 units of a 24-bit file
    assert audio["bad_length_clips"] == 0
    # A clip row that claims one more frame than its audio has.
    table = pq.read_table(tmp_path / "run" / "manifests" / "clips.parquet").to_pylist()
    for row in table:
        if row["clip_index"] == 0:
            row["clip_end_frame"] += 1
    pq.write_table(pa.Table.from_pylist(table, schema=ClipRecord.schema()),
                   tmp_path / "run" / "manifests" / "clips.parquet")
    assert _evaluate(SelfOtherMetric, tmp_path).summary["bad_length_clips"] == 1


def test_truth_stems_at_another_rate_are_resampled(tmp_path, stems):
    _case(tmp_path, stems, A_CLIPS, truth_rate=32000)
    assert sf.info(str(tmp_path / "truth" / VIDEO / "stems" / "A.flac")).samplerate == 32000
    audio = _evaluate(SelfOtherMetric, tmp_path).summary
    assert audio["self_si_sdr_mean"] > 40 and audio["other_si_sdr_mean"] > 40


def test_pooled_si_sdr_equals_si_sdr_of_the_concatenation():
    rng = np.random.default_rng(5)
    pooled = PooledSiSdr()
    estimates, references = [], []
    for n, gain in ((4000, 1.0), (9000, 0.2), (2500, 3.0)):
        reference = gain * rng.standard_normal(n) + 0.1
        estimate = 0.7 * reference + 0.3 * gain * rng.standard_normal(n)
        pooled.add(estimate, reference)
        estimates.append(estimate)
        references.append(reference)
    assert pooled.value() == pytest.approx(si_sdr(np.concatenate(estimates), np.concatenate(references)), abs=2e-3)
    assert PooledSiSdr().value() is None


def test_missing_work_files_are_counted(tmp_path, stems):
    _case(tmp_path, stems, A_CLIPS)
    (tmp_path / "run" / "work" / "clip1" / "frames.npz").unlink()
    talk = _evaluate(TalkListenMetric, tmp_path).summary
    assert talk["clips"] == 1 and talk["missing_files"] == {"filtered": 1}


def test_not_available_without_the_talk_stage(tmp_path, stems):
    write_truth(tmp_path / "truth", stems)
    write_run(tmp_path / "run", [(f"/videos/{VIDEO}.mp4", "src0", "ok")],
              [{"source_id": "src0", "shot_index": 0, "start_frame": 0, "end_frame": N_FRAMES}])
    for cls in (TalkListenMetric, AttributionMetric, SelfOtherMetric):
        result = _evaluate(cls, tmp_path)
        assert not result.available and "no talk stage" in result.reason
    (tmp_path / "run" / "manifests" / "clips.parquet").unlink()
    assert not _evaluate(TalkListenMetric, tmp_path).available


def test_registered_in_eval_json_and_table(tmp_path, stems):
    _case(tmp_path, stems, A_CLIPS)
    result = evaluate_run(tmp_path / "run", tmp_path / "truth")
    metrics = result["metrics"]
    assert metrics["talk_listen"]["summary"]["macro_f1"] == 1.0
    assert metrics["attribution"]["per_video"][VIDEO]["attribution"] == 1.0
    assert metrics["self_other"]["summary"]["self_clips"] == 2
    assert metrics["faces"]["available"]
    json.dumps(result)
    table = format_table(result)
    assert "talk_listen: " in table and "attribution: " in table and "self_other: " in table
