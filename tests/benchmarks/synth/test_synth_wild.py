"""Realistic mode (`voxhear synth --people-source wild`): real people of faces-wild/.

The footage is read from the shared media folder at run time only; the tests write what they
derive from it (a re-timed copy, composed videos) under pytest's tmp_path and nowhere else.
"""

from __future__ import annotations

import json
import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from voxhear.benchmarks.synth import SynthOptions, compose_dataset, media, vad, wild, wild_mouth
from voxhear.benchmarks.synth.compose import WILD_ONLY_OPTIONS, manifest
from voxhear.benchmarks.synth.options import SAMPLE_RATE
from voxhear.benchmarks.synth.sources import BACKGROUND_FILES, SPEECH_FILES
from voxhear.benchmarks.synth.wild_audio import room_response
from voxhear.benchmarks.synth.wild_render import _paste
from voxhear.benchmarks.synth.wild_script import Framing, WildLibrary, plan_wild_video, work_max_side

from .synth_helpers import MEDIA

WILD = MEDIA / wild.WILD_DIR
SMALL_PEOPLE = "deepavsr_00016,deepavsr_00019,pcavs_Pose_Source_741400163"
# Small sources (fast to decode), every feature in play: three voices, two-shots, backchannels.
SMALL_WILD = dict(videos=1, duration_s=10.0, width=320, height=180, people=3, shots=3, min_shot_s=1.0,
                  two_shot_prob=0.5, overlap_prob=0.4, backchannel_rate=0.6, seed=4, people_source="wild",
                  wild_people=SMALL_PEOPLE)
VIDEO = "synth-0000"


def _has_models() -> bool:
    try:
        for name in (wild.DETECTOR, wild_mouth.LANDMARK_MODEL):
            wild.model_store(MEDIA).resolve(name)
    except Exception:
        return False
    return True


HAVE_WILD = WILD.is_dir() and (MEDIA / "speech").is_dir() and (MEDIA / "background").is_dir() and _has_models()
WHY_NOT = (f"faces-wild, speech and background under {MEDIA}, the yunet and mediapipe-face-landmarker models "
           "(VOXHEAR_MODEL_DIR) are needed")
needs_wild = pytest.mark.skipif(not HAVE_WILD, reason=WHY_NOT)


def wild_options(out_dir: Path, media_dir: Path = MEDIA, **changes) -> SynthOptions:
    return SynthOptions(out_dir=out_dir, media_dir=media_dir, **{**SMALL_WILD, **changes})


def _plan(options: SynthOptions, index: int = 0):
    library = WildLibrary(options.media_dir, options.wild_people, work_max_side(options), SPEECH_FILES,
                          BACKGROUND_FILES)
    return plan_wild_video(options, index, library)


def _rttm(path: Path) -> list[tuple[float, float, str]]:
    rows = [line.split() for line in path.read_text().splitlines()]
    return [(float(r[3]), float(r[3]) + float(r[4]), r[7]) for r in rows]


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def composed_wild(tmp_path_factory) -> Path:
    if not HAVE_WILD:
        pytest.skip(WHY_NOT)
    out = tmp_path_factory.mktemp("wild") / "out"
    compose_dataset(wild_options(out))
    return out


# --- without media ----------------------------------------------------------------------------


def test_room_response_decays_by_60_db_over_rt60_with_the_drawn_drr() -> None:
    rt60, drr = 0.4, 6.0
    ir = room_response(rt60, drr, seed=7)
    assert ir[0] == 1.0 and len(ir) == round(rt60 * SAMPLE_RATE)
    assert np.all(ir[1:int(0.0025 * SAMPLE_RATE)] == 0.0)
    assert 10 * np.log10(np.sum(ir[1:] ** 2)) == pytest.approx(-drr, abs=1e-9)
    # Schroeder backward integration: the decay from -5 dB to -25 dB, extrapolated to 60 dB.
    energy = np.cumsum((ir[1:] ** 2)[::-1])[::-1]
    curve = 10 * np.log10(energy / energy[0])
    t5, t25 = np.argmax(curve <= -5) / SAMPLE_RATE, np.argmax(curve <= -25) / SAMPLE_RATE
    assert 3 * (t25 - t5) == pytest.approx(rt60, rel=0.15)


def test_framing_boxes_land_where_the_pixels_do() -> None:
    """The truth box of a face is the source box under the very transform the pixels go through."""
    source = np.zeros((90, 160, 3), np.uint8)
    box = (52.0, 20.0, 84.0, 62.0)  # whole pixels 52..83 x 20..61 are white
    source[20:62, 52:84] = 255
    framing = Framing("A", region=(10, 6, 140, 96), crop=(-20.0, 5.0, 80.0))
    canvas = np.full((108, 192, 3), 64, np.uint8)
    _paste(canvas, source, framing)
    x1, y1, x2, y2 = framing.box_on_canvas(box, (160, 90))
    white = canvas[:, :, 0] > 160
    ys, xs = np.nonzero(white)
    # Half-covered canvas pixels are grey: the white area's edges lie within a pixel of the box.
    assert abs(xs.min() - x1) <= 1.0 and abs(xs.max() + 1 - x2) <= 1.0
    assert abs(ys.min() - y1) <= 1.0 and abs(ys.max() + 1 - y2) <= 1.0
    # Outside the region (and outside the recording's footprint) the canvas is untouched.
    assert (canvas[:6] == 64).all() and (canvas[:, 150:] == 64).all()
    s, (tx, _) = framing.scale, framing.offset
    left_of_source = int(np.floor(tx)) - 1
    assert (canvas[6:102, 10:left_of_source] == 64).all()
    # A box reaching beyond the recording is clipped to what the region shows of it.
    clipped = framing.box_on_canvas((-30.0, -10.0, 40.0, 50.0), (160, 90))
    assert clipped[0] == pytest.approx(tx) and clipped[1] == pytest.approx(6.0)
    assert s == pytest.approx(96 / 80)


def test_snippets_are_short_own_speech() -> None:
    rng = np.random.default_rng(0)
    audio = rng.normal(0, 1e-3, SAMPLE_RATE * 4).astype(np.float32)
    t = np.arange(len(audio)) / SAMPLE_RATE
    loud = ((t > 0.5) & (t < 0.9)) | ((t > 1.5) & (t < 3.5) & ~((t > 1.85) & (t < 1.9)))
    audio[loud] += (0.3 * np.sin(2 * np.pi * 200 * t[loud])).astype(np.float32)
    segments = [(int(0.5 * SAMPLE_RATE), int(0.9 * SAMPLE_RATE)), (int(1.5 * SAMPLE_RATE), int(3.5 * SAMPLE_RATE))]
    voice = wild.Voice(Path("x.wav"), audio, vad.segments_to_mask(segments, len(audio)), segments,
                       vad.window_db(audio))
    found = wild.snippets(voice)
    assert found[0] == segments[0]  # a short segment, whole
    start, end = found[1]
    assert start == segments[1][0] and abs(end / SAMPLE_RATE - 1.85) < 0.03  # cut at the dip


def _mouths(gap, width=None) -> wild_mouth.Mouths:
    gap = np.asarray(gap, np.float64)
    width = np.full(len(gap), 0.55) if width is None else np.asarray(width, np.float64)
    return wild_mouth.Mouths(gap, width, {n: gap * 2 for n in wild_mouth.BLENDSHAPES})


def test_still_runs_keep_closed_still_mouths_only() -> None:
    closed = [0.01, 0.012, 0.011, 0.01, 0.012, 0.011]
    opening = [0.01 + 0.008 * k for k in range(6)]  # small steps, but 4 mm in all: a breath in
    talking = [0.02, 0.08, 0.03, 0.09, 0.02, 0.07]
    mouths = _mouths(closed + opening + talking + closed)
    everywhere = np.ones(len(mouths), bool)
    runs = wild_mouth.still_runs(everywhere, mouths, wild_mouth.CLOSED_GAP)
    assert (0, 6) in [(a, min(b, 6)) for a, b in runs]
    for a, b in runs:  # no run takes the mouth through more than GAP_RANGE_MAX, or across a jump
        assert np.ptp(mouths.gap[a:b]) <= wild_mouth.GAP_RANGE_MAX
        assert b - a == 1 or mouths.step[a:b - 1].max() <= wild_mouth.STEP_MAX
        assert not (12 <= a < 18 and b - a > 1)
    # Non-speech only: a still mouth during speech is never a listening frame.
    speech = np.zeros(len(mouths), bool)
    speech[:6] = True
    assert all(a >= 6 for a, _ in wild_mouth.still_runs(~speech, mouths, wild_mouth.CLOSED_GAP))
    # A missing face breaks a run.
    gap = np.array(closed * 3)
    gap[8] = np.nan
    assert wild_mouth.still_runs(np.ones(18, bool), _mouths(gap), 0.04) == [(0, 8), (9, 18)]


def test_listening_prefers_closed_long_runs_then_rest_then_sway() -> None:
    fps = 25.0
    n = 40
    rest_gap = [0.08 + 0.002 * (k % 2) for k in range(n)]  # parted lips, still: the face at rest
    speaking = np.zeros(n, bool)
    speaking[:20] = True
    gap = np.array([0.03, 0.17] * 10 + rest_gap[20:])  # speech opens and closes the mouth
    quiet = lambda margin: ~speaking  # noqa: E731
    chosen = wild_mouth.choose_listening(quiet, speaking, _mouths(gap), fps, (0.12, 0.04))
    assert chosen is not None and chosen.tier == "rest" and chosen.runs == ((20, 40),)
    assert chosen.gap_cap == pytest.approx(0.10)  # the median speaking gap
    gap[28:38] = 0.01  # a closed mouth for 0.4 s: preferred
    chosen = wild_mouth.choose_listening(quiet, speaking, _mouths(gap), fps, (0.12, 0.04))
    assert chosen is not None and chosen.tier == "closed" and chosen.runs == ((28, 38),)
    assert chosen.stats["listening"]["jaw_open"] < chosen.stats["speaking"]["jaw_open"]
    jitter = np.array([0.03, 0.17] * 10 + [0.01, 0.011, 0.06, 0.012, 0.01, 0.011, 0.05] * 3, np.float64)[:n]
    chosen = wild_mouth.choose_listening(quiet, speaking, _mouths(jitter), fps, (0.12, 0.04))
    assert chosen is not None and chosen.tier == "sway"
    assert all(2 <= b - a < 8 for a, b in chosen.runs)
    assert all(jitter[a:b].max() < 0.02 for a, b in chosen.runs)
    talking_only = np.array([0.03, 0.17] * 20)
    assert wild_mouth.choose_listening(quiet, speaking, _mouths(talking_only), fps, (0.12, 0.04)) is None
    # The margins are tried in order, the first with a still run wins.
    by_margin = {0.12: np.zeros(n, bool), 0.04: ~speaking}
    chosen = wild_mouth.choose_listening(by_margin.__getitem__, speaking, _mouths(gap), fps, (0.12, 0.04))
    assert chosen is not None and chosen.margin_s == 0.04


def test_a_grid_manifest_is_unchanged_by_the_realistic_options(tmp_path: Path) -> None:
    grid = manifest(SynthOptions(out_dir=tmp_path, media_dir=tmp_path), [])
    assert not set(WILD_ONLY_OPTIONS) & set(grid["options"])
    realistic = manifest(SynthOptions(out_dir=tmp_path, media_dir=tmp_path, people_source="wild"), [])
    assert realistic["options"]["people_source"] == "wild"
    assert SynthOptions.from_dict({"out_dir": "o", "media_dir": "m", **realistic["options"]}).people_source == "wild"


def test_cli_options_of_the_realistic_mode(tmp_path: Path) -> None:
    import argparse

    from voxhear.benchmarks.synth.cli import add_arguments, options_from_args

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args([str(tmp_path), "--realistic", "--wild-people", "a,b", "--backchannel-rate", "0.3"])
    options = options_from_args(args)
    assert (options.people_source, options.wild_people, options.backchannel_rate) == ("wild", "a,b", 0.3)
    assert options_from_args(parser.parse_args([str(tmp_path)])).people_source == "grid"


# --- composed from faces-wild -------------------------------------------------------------------


@needs_wild
def test_same_seed_gives_the_same_realistic_video(composed_wild: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    compose_dataset(wild_options(again))
    first, second = _files(composed_wild), _files(again)
    assert sorted(first) == sorted(second)
    assert {f"truth/{VIDEO}/faces.parquet", f"truth/{VIDEO}/dry/A.flac", f"videos/{VIDEO}.mp4"} <= set(first)
    assert [name for name in first if first[name] != second[name]] == []


@needs_wild
def test_realistic_truth_has_the_usual_format(composed_wild: Path) -> None:
    from voxhear.benchmarks.evaluation.data import TruthSet
    from voxhear.benchmarks.evaluation.talk import VideoTruth

    truth = composed_wild / "truth" / VIDEO
    meta = json.loads((truth / "meta.json").read_text())
    assert meta["people_source"] == "wild" and meta["n_frames"] == round(SMALL_WILD["duration_s"] * 25)
    for person in ("A", "B"):
        assert meta["people"][person]["source"].startswith("faces-wild/")
        assert Path(meta["people"][person]["source"]).stem in SMALL_PEOPLE.split(",")
        assert abs(meta["people"][person]["speech_level_offset_db"]) <= 8.0
        assert 0.2 <= meta["people"][person]["rt60_s"] <= 0.6
    assert meta["people"]["C"]["source"].startswith("speech/")
    # The mix is exactly the sum of the (reverberant) stems; the dry speech is beside them.
    mix = sf.read(truth / "mix.flac", dtype="int32")[0].astype(np.int64)
    stems = {p.stem: sf.read(p, dtype="int32")[0].astype(np.int64) for p in (truth / "stems").glob("*.flac")}
    assert set(stems) == {"A", "B", "C", "background"}
    assert (sum(stems.values()) == mix).all()
    assert sorted(p.stem for p in (truth / "dry").glob("*.flac")) == ["A", "B", "C"]
    # Faces inside the canvas; every visible person has a box and a label in every frame.
    faces = pq.read_table(truth / "faces.parquet").to_pandas()
    assert (faces.x1 >= 0).all() and (faces.y1 >= 0).all() and (faces.x2 <= 320).all() and (faces.y2 <= 180).all()
    assert (faces.x2 - faces.x1 > 20).all() and (faces.y2 - faces.y1 > 20).all()
    speaking = pq.read_table(truth / "speaking.parquet").to_pandas()
    assert len(speaking) == len(faces)
    shots = pq.read_table(truth / "shots.parquet").to_pylist()
    assert "two_shot" in {s["kind"] for s in shots} and shots[-1]["end_frame"] == meta["n_frames"]
    assert pq.read_table(truth / "words.parquet").num_rows == 0
    # What `voxhear eval` reads loads as for the GRID mode.
    truth_set = TruthSet.open(composed_wild)
    video = VideoTruth.load(truth_set, VIDEO)
    assert video.people == ["A", "B", "C"] and video.speaking.shape == (3, meta["n_frames"])


@needs_wild
def test_a_perfect_shot_run_scores_one_on_realistic_truth(composed_wild: Path, tmp_path: Path) -> None:
    from tests.benchmarks.evaluation.eval_helpers import clips_from_starts, write_run
    from voxhear.benchmarks.evaluation import evaluate_run

    shots = pq.read_table(composed_wild / "truth" / VIDEO / "shots.parquet").to_pylist()
    starts = [s["start_frame"] for s in shots]
    write_run(tmp_path / "run", [(str(composed_wild / "videos" / f"{VIDEO}.mp4"), "src0", "ok")],
              clips_from_starts("src0", starts, shots[-1]["end_frame"]))
    summary = evaluate_run(tmp_path / "run", composed_wild)["metrics"]["shots"]["summary"]
    assert summary["f1"] == 1.0 and summary["n_truth"] == len(shots) - 1


@needs_wild
def test_listeners_show_only_their_own_non_speech_frames(composed_wild: Path) -> None:
    """Every listening frame is at least the margin away from speech by an independent silero pass."""
    plan = _plan(wild_options(composed_wild))
    faces = pq.read_table(composed_wild / "truth" / VIDEO / "faces.parquet").to_pylist()
    for row in faces:  # the truth shows the planned frames
        assert row["source_frame"] == plan.source_frame[row["person_id"]][row["frame"]]
    for person in ("A", "B"):
        clip = plan.clips[person]
        speech = [(s / SAMPLE_RATE, e / SAMPLE_RATE)
                  for s, e in wild.silero_segments(media.decode_audio(clip.path))]
        listening = plan.source_frame[person][~plan.mouthing[person]]
        assert len(listening) > 10
        margin = clip.listen_margin_s - 1e-6
        for i in sorted(set(listening.tolist())):
            shown = (i / clip.fps, (i + 1) / clip.fps)
            assert all(shown[1] + margin <= s or shown[0] - margin >= e for s, e in speech), (person, i)
        # Alive, not frozen: at the recording's own rate consecutive listening frames differ.
        runs = vad.mask_to_segments(~plan.mouthing[person])
        for a, b in runs:
            shown = plan.source_frame[person][a:b]
            assert (np.diff(shown) != 0).all()
        # Speaking frames show the recording at the instant of the placed voice.
        assert plan.mouthing[person].any()


@needs_wild
def test_listening_frames_in_the_truth_show_a_stiller_more_closed_mouth(composed_wild: Path) -> None:
    """Measured on the recording frames the truth shows: where a person listens (not speaking, outside
    their own placed pieces) the mouth opens less and moves much less than where they speak."""
    plan = _plan(wild_options(composed_wild))
    truth = composed_wild / "truth" / VIDEO
    meta = json.loads((truth / "meta.json").read_text())
    faces = pq.read_table(truth / "faces.parquet").to_pandas().set_index(["frame", "person_id"])
    speaking = pq.read_table(truth / "speaking.parquet").to_pandas()
    jaw: dict[str, list[float]] = {"listening": [], "speaking": []}
    gap: dict[str, list[float]] = {"listening": [], "speaking": []}
    step: dict[str, list[float]] = {"listening": [], "speaking": []}
    for person in ("A", "B"):
        clip = plan.clips[person]
        mouths = wild_mouth.load_mouths(clip.path, clip.source_size, clip.fps, MEDIA)
        rows = speaking[speaking.person_id == person].sort_values("frame")
        kind = np.where(rows.speaking.to_numpy(), "speaking",
                        np.where(plan.mouthing[person][rows.frame.to_numpy()], "pause", "listening"))
        shown = np.array([faces.loc[(f, person), "source_frame"] if (f, person) in faces.index
                          else plan.source_frame[person][f] for f in rows.frame])
        for k in ("listening", "speaking"):
            at = kind == k
            jaw[k] += mouths.jaw_open[shown[at]].tolist()
            gap[k] += mouths.gap[shown[at]].tolist()
            both = at[1:] & at[:-1]
            step[k] += (np.abs(np.diff(mouths.gap[shown]))
                        + wild_mouth.WIDTH_WEIGHT * np.abs(np.diff(mouths.width[shown])))[both].tolist()
        listening = meta["people"][person]["listening"]
        assert listening["tier"] == clip.listening.tier == meta["people"][person]["pool_tier"]
        assert listening["shown_listening"]["frames"] == int((~plan.mouthing[person]).sum())
    print({k: (round(np.mean(jaw[k]), 4), round(np.mean(gap[k]), 4), round(np.mean(step[k]), 4)) for k in jaw})
    assert len(jaw["listening"]) > 50 and len(jaw["speaking"]) > 50
    assert np.mean(jaw["listening"]) < 0.5 * np.mean(jaw["speaking"])
    assert np.mean(gap["listening"]) < 0.5 * np.mean(gap["speaking"])
    assert np.mean(step["listening"]) < 0.3 * np.mean(step["speaking"])
    assert max(step["listening"]) <= wild_mouth.STEP_MAX + 1e-9


@needs_wild
def test_mouth_measurements_are_cached_by_content(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("VOXHEAR_CACHE_DIR", str(tmp_path / "cache"))
    path = WILD / "pcavs_Pose_Source_620900105.mp4"  # the shortest recording
    candidate = wild.survey_one(path, look=False)
    first = wild_mouth.load_mouths(path, candidate.size, candidate.fps, MEDIA)
    cached = list((tmp_path / "cache" / "synth-mouth").glob("*.npz"))
    assert len(cached) == 1 and cached[0].name.startswith(wild_mouth._sha256(path))
    assert len(first) == candidate.n_frames and np.isfinite(first.gap).all()
    again = wild_mouth.load_mouths(path, candidate.size, candidate.fps, MEDIA)
    assert np.array_equal(first.gap, again.gap) and np.array_equal(first.jaw_open, again.jaw_open)


@needs_wild
def test_backchannels_are_short_turns_inside_the_others_speech(composed_wild: Path) -> None:
    plan = _plan(wild_options(composed_wild))
    turns = _rttm(composed_wild / "truth" / VIDEO / "turns.rttm")
    backchannels = [p for p in plan.pieces if p.kind == "backchannel"]
    assert backchannels and json.loads((composed_wild / "truth" / VIDEO / "meta.json").read_text())[
        "n_backchannels"] == len(backchannels)
    for piece in backchannels:
        start, end = piece.start_sample / SAMPLE_RATE, piece.end_sample / SAMPLE_RATE
        assert end - start <= wild.SNIPPET_S[1] + 1e-9
        # Its own turn in the RTTM, short, while another person's turn goes on around it.
        own = [t for t in turns if t[2] == piece.person_id and t[0] < end and t[1] > start]
        assert len(own) == 1 and own[0][1] - own[0][0] <= wild.SNIPPET_S[1] + 0.01
        around = [t for t in turns if t[2] != piece.person_id and t[0] <= own[0][0] and t[1] >= own[0][1]]
        assert around, piece
    # Turns overlap elsewhere too (overlap_prob), and A, B and C all speak.
    assert {t[2] for t in turns} == {"A", "B", "C"}


@pytest.fixture(scope="module")
def ntsc_media(tmp_path_factory) -> Path:
    """A media folder whose faces-wild holds deepavsr_00019 re-timed to 29.97 fps (frames resampled)."""
    if not HAVE_WILD:
        pytest.skip(WHY_NOT)
    root = tmp_path_factory.mktemp("ntsc") / "media"
    (root / wild.WILD_DIR).mkdir(parents=True)
    for folder in ("speech", "background"):
        (root / folder).symlink_to(MEDIA / folder)
    (root / wild.WILD_DIR / "deepavsr_00016.mp4").symlink_to(WILD / "deepavsr_00016.mp4")
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(WILD / "deepavsr_00019.mp4"),
                    "-vf", "fps=30000/1001", "-c:v", "libx264", "-preset", "ultrafast", "-crf", "18",
                    "-c:a", "copy", str(root / wild.WILD_DIR / "deepavsr_00019.mp4")], check=True)
    return root


@needs_wild
@pytest.mark.parametrize("out_fps", [25.0, 29.97])
def test_a_29_97_fps_recording_is_resampled_by_nearest_frame(ntsc_media: Path, tmp_path: Path, out_fps: float) -> None:
    options = wild_options(tmp_path / "out", ntsc_media, duration_s=6.0, width=192, height=108, fps=out_fps,
                           people=2, shots=2, wild_people="", seed=1)
    assert wild.survey_one(ntsc_media / wild.WILD_DIR / "deepavsr_00019.mp4").fps == pytest.approx(30000 / 1001)
    compose_dataset(options)
    meta = json.loads((tmp_path / "out" / "truth" / VIDEO / "meta.json").read_text())
    n_frames = round(6.0 * out_fps)
    assert meta["fps"] == out_fps and meta["n_frames"] == n_frames
    probe = json.loads(subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
         "stream=r_frame_rate,nb_read_frames", "-of", "json", str(tmp_path / "out" / "videos" / f"{VIDEO}.mp4")],
        capture_output=True, check=True).stdout)["streams"][0]
    assert int(probe["nb_read_frames"]) == n_frames
    assert float(Fraction(probe["r_frame_rate"])) == pytest.approx(out_fps, abs=1e-3)
    plan = _plan(options)
    ntsc = [p for p, c in plan.clips.items() if c.name == "deepavsr_00019"]
    assert ntsc and plan.clips[ntsc[0]].fps == pytest.approx(30000 / 1001)
    faces = pq.read_table(tmp_path / "out" / "truth" / VIDEO / "faces.parquet").to_pylist()
    shown = {(r["frame"], r["person_id"]): r["source_frame"] for r in faces}
    for person, clip in plan.clips.items():
        checked = 0
        for k in range(n_frames):
            mid = int(np.floor((k + 0.5) / out_fps * SAMPLE_RATE))
            piece = next((p for p in plan.pieces if p.person_id == person and p.start_sample <= mid < p.end_sample),
                         None)
            expected = None
            if piece is not None:
                seconds = (piece.source_start + mid - piece.start_sample) / SAMPLE_RATE
                expected = min(clip.n_frames - 1, int(np.floor(seconds * clip.fps + 1e-9)))
                assert plan.source_frame[person][k] == expected
                checked += 1
            if (k, person) in shown:
                assert shown[(k, person)] == plan.source_frame[person][k]
            assert 0 <= plan.source_frame[person][k] < clip.n_frames
        assert checked > 0


@needs_wild
@pytest.mark.slow
def test_survey_keeps_single_person_recordings_with_enough_non_speech() -> None:
    candidates = {c.name: c for c in wild.survey(MEDIA)}
    assert len(candidates) == 19
    for name in wild.TWO_PERSON:
        assert candidates[name].tier == "excluded"
    long = {c.name: np.ceil(wild_mouth.MIN_STILL_RUN_S * c.fps - 1e-9) for c in candidates.values()}
    for c in candidates.values():
        assert c.reason
        if c.tier == "excluded":
            assert c.listening is None and not c.usable
            continue
        assert c.tier in ("closed", "rest", "sway") and c.listening is not None
        assert c.margin_s in (wild.LISTEN_MARGIN_S, wild.FALLBACK_MARGIN_S) and c.listen_s > 0
        runs = c.listening.runs
        assert all(b - a >= (long[c.name] if c.tier != "sway" else wild_mouth.MIN_SWAY_RUN) for a, b in runs)
        # Everywhere the listening mouth moves far less than the speaking one.
        stats = c.listening.stats
        assert stats["listening"]["step"] < stats["speaking"]["step"], c.name
        if c.tier == "closed":
            assert stats["listening"]["lip_gap"] <= wild_mouth.CLOSED_GAP
            assert stats["listening"]["jaw_open"] < stats["speaking"]["jaw_open"]
    assert sum(c.usable for c in candidates.values()) >= 8
    assert sum(c.tier == "closed" for c in candidates.values()) >= 4
    with pytest.raises(ValueError, match="cannot be a person"):
        wild.wild_pool(MEDIA, "visualvoice_interview,deepavsr_00016")


@needs_wild
@pytest.mark.slow
def test_a_30_s_video_from_the_whole_pool(tmp_path: Path) -> None:
    """The development-set configuration (docs/synth-format.md), one video."""
    options = SynthOptions(out_dir=tmp_path / "out", media_dir=MEDIA, videos=1, duration_s=30.0, people=3,
                           seed=7, people_source="wild", overlap_prob=0.25, two_shot_prob=0.3)
    compose_dataset(options)
    truth = tmp_path / "out" / "truth" / VIDEO
    turns = _rttm(truth / "turns.rttm")
    assert len({t[2] for t in turns}) >= 2
    faces = pq.read_table(truth / "faces.parquet").to_pandas()
    assert (faces.x1 >= 0).all() and (faces.x2 <= 640).all() and (faces.y1 >= 0).all() and (faces.y2 <= 360).all()
    frames = subprocess.run(["ffmpeg", "-v", "error", "-i", str(tmp_path / "out" / "videos" / f"{VIDEO}.mp4"),
                             "-f", "rawvideo", "-pix_fmt", "gray", "-"], capture_output=True, check=True).stdout
    assert len(frames) == 750 * 640 * 360


# --- audio-only diarization set -----------------------------------------------------------------


@pytest.mark.skipif(not WILD.is_dir(), reason=f"no {WILD}")
def test_every_faces_wild_recording_has_a_licence_that_forbids_publishing() -> None:
    from voxhear.benchmarks.synth.sources import credit_of, licence_of

    recordings = sorted(WILD.glob("*.mp4"))
    assert recordings
    for path in recordings:
        assert "do not publish" in licence_of(path).licence
        assert credit_of(path) == ""  # the .txt files there are transcripts, not credits


def test_speakers_are_people_not_files() -> None:
    from voxhear.benchmarks.synth.diar import speaker_of

    assert speaker_of(Path("speech/cmu_arctic_us_aew_a0002.wav")) == speaker_of(Path("cmu_arctic_us_aew_a0003.wav"))
    assert speaker_of(Path("2412-153948-0000.flac")) == speaker_of(Path("2412-153948-0001.flac")) == "librispeech_2412"
    assert speaker_of(Path("faces-wild/edtalk_uncrop_Obama.mp4")) == "edtalk_uncrop_Obama"


@needs_wild
def test_audio_only_conversations_have_2_to_4_voices_and_the_drawn_overlap(tmp_path: Path) -> None:
    from voxhear.benchmarks.evaluation.audio import active_counts

    options = SynthOptions(out_dir=tmp_path / "a", media_dir=MEDIA, videos=2, duration_s=40.0, seed=2,
                           audio_only=True)
    paths = compose_dataset(options)
    assert [p.name for p in paths] == ["synth-0000.flac", "synth-0001.flac"]
    for path in paths:
        truth = tmp_path / "a" / "truth" / path.stem
        meta = json.loads((truth / "meta.json").read_text())
        turns = _rttm(truth / "turns.rttm")
        speakers = {t[2] for t in turns}
        assert 2 <= len(speakers) == len(meta["people"]) <= 4
        assert len({p["speaker"] for p in meta["people"].values()}) == len(speakers)  # different people
        # The overlap share, measured on the RTTM: within the drawn target's tolerance, in 10-25 %.
        grid = np.arange(0, meta["duration_s"], 0.001)
        count = active_counts(turns, grid)
        share = (count >= 2).sum() / (count >= 1).sum()
        assert share == pytest.approx(meta["overlap_share"], abs=0.005)
        assert 0.08 <= share <= 0.27
        assert min(e - s for s, e, _ in turns) < 0.7  # short turns and backchannels
        mix = sf.read(truth / "mix.flac", dtype="int32")[0].astype(np.int64)
        stems = [sf.read(p, dtype="int32")[0].astype(np.int64) for p in (truth / "stems").glob("*.flac")]
        assert (sum(stems) == mix).all()
        assert (sf.read(path, dtype="int32")[0] == mix).all()
    assert (tmp_path / "a" / "all.rttm").read_text().count("SPEAKER") == sum(
        len(_rttm(tmp_path / "a" / "truth" / p.stem / "turns.rttm")) for p in paths)
    again = tmp_path / "b"
    compose_dataset(SynthOptions(**{**options.to_json(), "out_dir": again}))
    assert _files(tmp_path / "a") == _files(again)
