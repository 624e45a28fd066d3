"""The seeded plan of one realistic video (`--people-source wild`): turns, backchannels, frames, shots.

Every random choice is drawn here from one generator seeded with (dataset seed, video index), in
a fixed order; audio, rendering and truth only execute the plan. Speech is placed sample by
sample (16 kHz); frames are output frames at the video's fps, and each person's frames are taken
from their own recording at its own frame rate: the frame on display at the corresponding
instant of the recording (nearest frame in time, no interpolation).

A turn is a contiguous stretch of the speaker's own recording (their speech with its natural
pauses, lips and voice together), of a target length drawn log-uniformly in TURN_S; it ends at
the end of a speech segment, or inside a long one at its quietest 10 ms (between words) when the
segment would overshoot by more than EXTEND_S. Each person's next turn resumes where the last
one stopped; when the recording's speech runs out the turn goes on from another speech segment
(a loop) after a short pause. The listener shows their own listening frames (no speech within the
margin and a still mouth; `wild.py`, `wild_mouth.py`), back and forth over one still run of them
per listening stretch, and now and then says a backchannel: a short piece of their own speech (a
short segment or the first word or two of one) placed while the other is speaking.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from voxhear.benchmarks.synth import vad
from voxhear.benchmarks.synth.options import SAMPLE_RATE, SynthOptions
from voxhear.benchmarks.synth.people import Recording
from voxhear.benchmarks.synth.script import (
    KIND_TWO_SHOT,
    OFF_SCREEN,
    ON_SCREEN,
    CastAndShots,
    Shot,
    draw_background_offset,
    draw_recordings,
    next_speaker,
    next_turn_start,
    other_on_screen,
    plan_shots,
)
from voxhear.benchmarks.synth.wild import Voice, WildPerson, load_person, load_voice, wild_pool

# Turn-taking, in seconds.
OPENING_S = (0.2, 0.8)
TURN_S = (0.3, 20.0)
# The off-screen voice interjects (a question, a remark): its turns are at most this long.
OFFSCREEN_TURN_MAX_S = 5.0
# No turn is longer than this share of the video, the opening one than the smaller share (so
# that a short video still has both people speaking).
LONGEST_TURN_SHARE = 0.6
OPENING_TURN_SHARE = 0.3
EXTEND_S = 1.0
CUT_SEARCH_S = 0.4
MIN_PART_S = 0.25  # a cut leaves at least this much speech on both sides
GAP_S = (0.05, 0.8)
OVERLAP_S = (0.2, 1.5)
LOOP_GAP_S = (0.1, 0.4)
MAX_LOOPS = 100
END_MARGIN_S = 0.1
# Backchannels: only in turns at least this long, clear of the turn's edges, inside the
# speaker's speech, and this far from the listener's own speech (so each is a turn of its own).
BACKCHANNEL_MIN_TURN_S = 1.5
BACKCHANNEL_EDGE_S = 0.3
BACKCHANNEL_CLEAR_S = 0.5
BACKCHANNEL_TRIES = 8
# Audio realism, per person: level offset, reverberation, microphone noise (wild_audio.py).
LEVEL_OFFSET_DB = 8.0
RT60_S = (0.2, 0.6)
DRR_DB = (2.0, 10.0)
MIC_NOISE_DBFS = (-70.0, -55.0)
# Framing: the median face height as a share of the screen region's height, for a close shot
# and for a side of a two-shot; the crop always holds every face box of the recording with this
# much room; a two-shot's margins (shares of the canvas) around and between its two regions.
CLOSE_FACE_SHARE = (0.30, 0.55)
TWO_SHOT_FACE_SHARE = (0.28, 0.45)
FACE_ROOM = 1.15
CROP_OFFSET = 0.08
TWO_SHOT_MARGIN_X = (0.0, 0.04)
TWO_SHOT_GAP_X = (0.01, 0.03)
TWO_SHOT_MARGIN_Y = (0.0, 0.12)


@dataclass(frozen=True, slots=True)
class Piece:
    """One stretch of a recording placed on the video timeline (samples).

    Attributes:
        person_id: ``A``, ``B`` or ``C``.
        start_sample: Where it starts in the video.
        source_start: First sample of the recording placed.
        source_end: End (exclusive) of the placed samples.
        kind: ``turn`` or ``backchannel``.
    """

    person_id: str
    start_sample: int
    source_start: int
    source_end: int
    kind: str = "turn"

    @property
    def end_sample(self) -> int:
        return self.start_sample + self.source_end - self.source_start


@dataclass(frozen=True, slots=True)
class Framing:
    """A recording placed in a screen region: a fixed crop of it, scaled to fill the region.

    Source (working) pixel x maps to canvas x as ``scale * x + tx`` in continuous pixel
    coordinates (pixel i spans [i, i+1)); the same for y. Pixels of the region outside the
    recording show the backdrop.

    Attributes:
        person_id: ``A`` or ``B``.
        region: (x, y, width, height) of the screen region, integer canvas pixels.
        crop: (x, y, height) of the crop in working pixels (its width is height * region aspect).
    """

    person_id: str
    region: tuple[int, int, int, int]
    crop: tuple[float, float, float]

    @property
    def scale(self) -> float:
        return self.region[3] / self.crop[2]

    @property
    def offset(self) -> tuple[float, float]:
        s = self.scale
        return self.region[0] - s * self.crop[0], self.region[1] - s * self.crop[1]

    def box_on_canvas(self, box, source_size: tuple[int, int]) -> tuple[float, float, float, float]:
        """A working-pixel box on the canvas, clipped to what of the recording the region shows."""
        s, (tx, ty) = self.scale, self.offset
        x0, y0, w, h = self.region
        left, top = max(x0, tx), max(y0, ty)
        right, bottom = min(x0 + w, tx + s * source_size[0]), min(y0 + h, ty + s * source_size[1])
        return (min(max(s * box[0] + tx, left), right), min(max(s * box[1] + ty, top), bottom),
                min(max(s * box[2] + tx, left), right), min(max(s * box[3] + ty, top), bottom))


@dataclass(slots=True)
class WildPlan(CastAndShots):
    """Everything one realistic video is made of; audio, rendering and truth follow it."""

    video_id: str
    seed: list[int]
    fps: float
    width: int
    height: int
    n_samples: int
    n_frames: int
    clips: dict[str, WildPerson]
    offscreen: Voice | None
    background: Recording
    background_offset: int
    snr_db: float
    speech_gain_db: dict[str, float]
    rt60_s: dict[str, float]
    drr_db: dict[str, float]
    reverb_seeds: dict[str, int]
    mic_noise_dbfs: float
    noise_seed: int
    backdrop_seeds: dict[str, int]
    pieces: list[Piece] = field(default_factory=list)
    shots: list[Shot] = field(default_factory=list)
    # Per on-screen person and output frame: the frame of their recording shown, and whether it
    # belongs to a placed piece of speech (else it is a listening frame).
    source_frame: dict[str, np.ndarray] = field(default_factory=dict)
    mouthing: dict[str, np.ndarray] = field(default_factory=dict)

    def voice(self, person: str) -> Voice:
        voice = self.offscreen if person == OFF_SCREEN else self.clips[person]
        assert voice is not None
        return voice


class WildLibrary:
    """The shared media for the realistic mode: the faces-wild pool, voices and backgrounds."""

    def __init__(self, media_dir, names: str, work_max_side: int, speech_files, background_files) -> None:
        from pathlib import Path

        self.media_dir = Path(media_dir)
        self.pool = [c.name for c in wild_pool(self.media_dir, names)]
        self.work_max_side = work_max_side
        self.speech_names = sorted(n for n in speech_files if (self.media_dir / "speech" / n).exists())
        self.background_names = sorted(n for n in background_files if (self.media_dir / "background" / n).exists())

    def person(self, name: str) -> WildPerson:
        return load_person(self.media_dir, name, self.work_max_side)

    def speech(self, name: str) -> Voice:
        return load_voice(self.media_dir / "speech" / name)

    def background(self, name: str) -> Recording:
        from voxhear.benchmarks.synth.people import load_recording

        return load_recording(self.media_dir / "background" / name, False)


def work_max_side(options: SynthOptions) -> int:
    """Working resolution of the recordings: the detector's 640, or the canvas when larger."""
    return max(640, options.width, options.height)


def plan_wild_video(options: SynthOptions, index: int, library: WildLibrary) -> WildPlan:
    """Draw the whole plan of realistic video `index` from the dataset seed."""
    seed = [options.seed, index]
    rng = np.random.default_rng(seed)
    clips, offscreen, background = draw_recordings(
        rng, options, library, library.pool, library.person,
        f"the realistic mode needs two usable faces-wild recordings, found {library.pool}")
    n_samples = int(round(options.duration_s * SAMPLE_RATE))
    plan = WildPlan(
        video_id=f"synth-{index:04d}", seed=seed, fps=options.fps, width=options.width, height=options.height,
        n_samples=n_samples, n_frames=int(round(options.duration_s * options.fps)), clips=clips,
        offscreen=offscreen, background=background,
        background_offset=draw_background_offset(rng, background, n_samples),
        snr_db=float(rng.uniform(options.snr_db_min, options.snr_db_max)),
        **draw_sound_conditions(rng, ("A", "B", "C")),
        backdrop_seeds={k: int(rng.integers(2**31)) for k in ("A", "B", KIND_TWO_SHOT)},
    )
    turns = _plan_turns(rng, options, plan)
    plan.pieces = sorted(turns + _plan_backchannels(rng, options, plan, turns),
                         key=lambda p: (p.start_sample, p.person_id))
    _fill_tracks(rng, plan)
    plan.shots = _plan_shots(rng, options, plan)
    return plan


def draw_sound_conditions(rng: np.random.Generator, people) -> dict:
    """Per person a level offset and a room (RT60, DRR, reverberation seed), then the microphone
    noise level and seed: the `WildPlan` and diarization `AudioPlan` fields of the same names,
    drawn in this order (`wild_audio.build_wild_soundtrack` renders both)."""
    return {
        "speech_gain_db": {p: float(rng.uniform(-LEVEL_OFFSET_DB, LEVEL_OFFSET_DB)) for p in people},
        "rt60_s": {p: float(rng.uniform(*RT60_S)) for p in people},
        "drr_db": {p: float(rng.uniform(*DRR_DB)) for p in people},
        "reverb_seeds": {p: int(rng.integers(2**31)) for p in people},
        "mic_noise_dbfs": float(rng.uniform(*MIC_NOISE_DBFS)),
        "noise_seed": int(rng.integers(2**31)),
    }


# --- speech -------------------------------------------------------------------------------


def _seconds(value: float) -> int:
    return int(round(value * SAMPLE_RATE))


def _segment_at(voice: Voice, sample: int) -> int:
    """Index of the first speech segment that ends after `sample` (len(segments) if none)."""
    for i, (_, end) in enumerate(voice.segments):
        if end > sample:
            return i
    return len(voice.segments)


def _cut(voice: Voice, lo: int, hi: int) -> int | None:
    """The quietest 10 ms window start in [lo, hi] (samples), or None when the range is empty."""
    first, last = -(-lo // vad.HOP), hi // vad.HOP
    if last < first:
        return None
    return (first + int(np.argmin(voice.levels[first:last + 1]))) * vad.HOP


def _stretch(voice: Voice, cursor: int, target: int) -> tuple[int, int, bool]:
    """One contiguous piece of speech from `cursor`: (start, end, ran_out).

    `cursor` is a segment start or an earlier cut. The piece ends at the first segment end at
    least `target` after its start, or at a cut between words inside that segment when its end
    lies more than EXTEND_S further; `ran_out` says the recording's speech ended first.
    """
    i = _segment_at(voice, cursor)
    if i >= len(voice.segments):
        return cursor, cursor, True
    start = max(cursor, voice.segments[i][0])
    for seg_start, seg_end in voice.segments[i:]:
        if seg_end - start < target:
            continue
        if seg_end - (start + target) <= _seconds(EXTEND_S):
            return start, seg_end, False
        lo = max(start + target, max(seg_start, start) + _seconds(MIN_PART_S))
        hi = min(start + target + _seconds(CUT_SEARCH_S), seg_end - _seconds(MIN_PART_S))
        cut = _cut(voice, lo, hi)
        return start, (cut if cut is not None else seg_end), False
    return start, voice.segments[-1][1], True


def _next_cursor(voice: Voice, end: int) -> int:
    """Where the person's next turn resumes: at a cut, else the next segment's start."""
    i = _segment_at(voice, end)
    if i < len(voice.segments) and voice.segments[i][0] < end:
        return end  # a cut inside segment i
    return voice.segments[i][0] if i < len(voice.segments) else len(voice.audio)


def _trim(voice: Voice, start: int, end: int, room: int) -> int:
    """End of a piece cut to at most `room` samples, never leaving a speech fragment < MIN_PART_S."""
    if end - start <= room:
        return end
    end = start + room
    speech = voice.speech[start:end]
    if len(speech) and speech[-1]:
        runs = vad.mask_to_segments(speech)
        last_start = start + runs[-1][0]
        if end - last_start < _seconds(MIN_PART_S):
            end = last_start
    return end


def _turn(rng: np.random.Generator, voice: Voice, person: str, at: int, cursor: int, limit: int,
          longest_s: float) -> tuple[list[Piece], int]:
    """The pieces of one turn starting at `at`, and the person's cursor afterwards."""
    longest = max(TURN_S[0], min(longest_s, TURN_S[1]))
    target = _seconds(math.exp(rng.uniform(math.log(TURN_S[0]), math.log(longest))))
    pieces: list[Piece] = []
    t = at
    for _ in range(MAX_LOOPS):
        if target <= 0 or t >= limit - _seconds(MIN_PART_S):
            break
        start, end, ran_out = _stretch(voice, cursor, target)
        if end > start:
            end = _trim(voice, start, end, limit - t)
            if end - start >= _seconds(MIN_PART_S):
                pieces.append(Piece(person, t, start, end))
                t += end - start
                target -= end - start
        if not ran_out:
            cursor = _next_cursor(voice, end)
            break
        # The recording's speech ran out: go on from another of its segments after a pause.
        cursor = voice.segments[int(rng.integers(len(voice.segments)))][0]
        if pieces:
            t += _seconds(rng.uniform(*LOOP_GAP_S))
    return pieces, cursor


def _plan_turns(rng: np.random.Generator, options: SynthOptions, plan: WildPlan) -> list[Piece]:
    """Alternate A and B (C now and then), with pauses or overlaps between turns."""
    limit = plan.n_samples - _seconds(END_MARGIN_S)
    pieces: list[Piece] = []
    voices = {p: plan.voice(p) for p in plan.people}
    cursor = {p: v.segments[int(rng.integers(len(v.segments)))][0] for p, v in voices.items()}
    t = _seconds(rng.uniform(*OPENING_S))
    who = ON_SCREEN[int(rng.integers(2))]
    free_from = {p: 0 for p in voices}
    turn, person = 0, ""
    while t < limit - _seconds(MIN_PART_S):
        person = next_speaker(rng, options, who, person, turn, plan.offscreen is not None)
        turn += 1
        t = max(t, free_from[person])
        if t >= limit - _seconds(MIN_PART_S):
            break
        longest = (OPENING_TURN_SHARE if turn == 1 else LONGEST_TURN_SHARE) * plan.n_samples / SAMPLE_RATE
        if person == OFF_SCREEN:
            longest = min(longest, OFFSCREEN_TURN_MAX_S)
        new, cursor[person] = _turn(rng, voices[person], person, t, cursor[person], limit, longest)
        if not new:
            break
        pieces.extend(new)
        turn_start, turn_end = new[0].start_sample, new[-1].end_sample
        free_from[person] = turn_end + _seconds(vad.MERGE_GAP_S)
        if person != OFF_SCREEN:
            who = other_on_screen(who)
        t = next_turn_start(rng, options.overlap_prob, turn_start, turn_end,
                            lambda: _seconds(rng.uniform(*OVERLAP_S)), lambda: _seconds(rng.uniform(*GAP_S)))
    return pieces


def placed_speech_mask(plan, pieces: list[Piece], person: str) -> np.ndarray:
    """Where on the timeline `person` speaks: the speech masks of their placed pieces (a
    `WildPlan` or a diarization `AudioPlan`; a piece reaching past the end is cut there)."""
    mask = np.zeros(plan.n_samples, dtype=bool)
    voice = plan.voice(person)
    for p in pieces:
        if p.person_id == person:
            end = min(p.end_sample, plan.n_samples)
            mask[p.start_sample:end] |= voice.speech[p.source_start:p.source_start + end - p.start_sample]
    return mask


def _plan_backchannels(rng: np.random.Generator, options: SynthOptions, plan: WildPlan,
                       turns: list[Piece]) -> list[Piece]:
    """Short speech of the listener while the other speaks, from the listener's own recording."""
    masks = {p: placed_speech_mask(plan, turns, p) for p in plan.people}
    busy = {p: [(q.start_sample, q.end_sample) for q in turns if q.person_id == p] for p in ON_SCREEN}
    clear, edge = _seconds(BACKCHANNEL_CLEAR_S), _seconds(BACKCHANNEL_EDGE_S)
    out: list[Piece] = []
    for speaker, start, end in _turn_spans(turns):
        if end - start < _seconds(BACKCHANNEL_MIN_TURN_S):
            continue
        listeners = [p for p in ON_SCREEN if p != speaker]
        listener = listeners[int(rng.integers(len(listeners)))]
        person = plan.clips[listener]
        count = int(rng.poisson(options.backchannel_rate * (end - start) / SAMPLE_RATE))
        for _ in range(count):
            if not person.snippets:
                break
            for _ in range(BACKCHANNEL_TRIES):
                s0, s1 = person.snippets[int(rng.integers(len(person.snippets)))]
                length = s1 - s0
                if end - edge - length <= start + edge:
                    break
                at = int(rng.integers(start + edge, end - edge - length))
                inside = masks[speaker][at:at + length].all()
                free = all(at + length + clear <= b0 or at >= b1 + clear for b0, b1 in busy[listener])
                if inside and free and at + length <= plan.n_samples:
                    out.append(Piece(listener, at, s0, s1, "backchannel"))
                    busy[listener].append((at, at + length))
                    break
    return out


def _turn_spans(pieces: list[Piece]) -> list[tuple[str, int, int]]:
    """(person, start, end) of each turn: consecutive pieces of one person joined."""
    spans: list[tuple[str, int, int]] = []
    for p in pieces:
        if spans and spans[-1][0] == p.person_id and p.start_sample >= spans[-1][2]:
            spans[-1] = (p.person_id, spans[-1][1], p.end_sample)
        else:
            spans.append((p.person_id, p.start_sample, p.end_sample))
    return spans


# --- frames -------------------------------------------------------------------------------


def _fill_tracks(rng: np.random.Generator, plan: WildPlan) -> None:
    """The recording frame each on-screen person shows in each output frame.

    Inside a placed piece: the frame on display at the matching instant of the recording (lips
    with their own voice). Elsewhere the person listens: each listening stretch plays one still run
    of listening frames (`wild_mouth.still_runs`, 2 frames or more) back and forth, the run (by its
    length) and the starting point drawn.
    """
    mids = np.floor((np.arange(plan.n_frames) + 0.5) / plan.fps * SAMPLE_RATE).astype(np.int64)
    for person in ON_SCREEN:
        clip = plan.clips[person]
        frames = np.full(plan.n_frames, -1, dtype=np.int64)
        mouthing = np.zeros(plan.n_frames, dtype=bool)
        for p in plan.pieces:
            if p.person_id != person:
                continue
            inside = (mids >= p.start_sample) & (mids < p.end_sample)
            source_s = (p.source_start + mids[inside] - p.start_sample) / SAMPLE_RATE
            frames[inside] = [clip.frame_at(s) for s in source_s]
            mouthing[inside] = True
        runs = clip.listen_runs
        assert runs
        lengths = np.array([b - a for a, b in runs], dtype=np.float64)
        for start, end in vad.mask_to_segments(~mouthing):
            first, stop = runs[int(rng.choice(len(runs), p=lengths / lengths.sum()))]
            n = stop - first
            period = 2 * (n - 1)
            offset = float(rng.uniform(0, period))
            elapsed = (np.arange(start, end) - start) / plan.fps
            step = np.floor(offset + elapsed * clip.fps + 1e-9).astype(np.int64) % period
            frames[start:end] = first + np.where(step < n, step, period - step)
        plan.source_frame[person] = frames
        plan.mouthing[person] = mouthing


# --- shots --------------------------------------------------------------------------------


def _plan_shots(rng: np.random.Generator, options: SynthOptions, plan: WildPlan) -> list[Shot]:
    """Shot boundaries and kinds as in the GRID mode (`script.plan_shots`); each shot frames its
    people afresh: a close shot fills the canvas, a two-shot splits it into two side-by-side regions."""

    def talking_at(frame: int) -> list[str]:
        return [p for p in ON_SCREEN if plan.mouthing[p][frame]]

    def place(kind: str, left: str) -> tuple[Framing, ...]:
        if kind != KIND_TWO_SHOT:
            return (_frame(rng, plan, kind, (0, 0, plan.width, plan.height), CLOSE_FACE_SHARE),)
        w, h = plan.width, plan.height
        mx = float(rng.uniform(*TWO_SHOT_MARGIN_X)) * w
        gap = float(rng.uniform(*TWO_SHOT_GAP_X)) * w
        my = int(round(float(rng.uniform(*TWO_SHOT_MARGIN_Y)) * h))
        side = int((w - 2 * mx - gap) // 2)
        x_left = int(round(mx))
        x_right = w - x_left - side
        return (_frame(rng, plan, left, (x_left, my, side, h - 2 * my), TWO_SHOT_FACE_SHARE),
                _frame(rng, plan, other_on_screen(left), (x_right, my, side, h - 2 * my), TWO_SHOT_FACE_SHARE))

    return plan_shots(rng, options, plan.n_frames, talking_at, place)


def _frame(rng: np.random.Generator, plan: WildPlan, person: str, region: tuple[int, int, int, int],
           face_share: tuple[float, float]) -> Framing:
    """A crop of the person's recording for `region`: the face at a drawn share of its height.

    The crop has the region's aspect and always contains every face box of the recording (with
    FACE_ROOM); it does not exceed the recording where the recording is large enough (else the
    recording is centred and the rest of the region shows the backdrop).
    """
    clip = plan.clips[person]
    src_w, src_h = clip.work_size
    fx1, fy1, fx2, fy2 = clip.face_region()
    aspect = region[2] / region[3]
    need = FACE_ROOM * max(fy2 - fy1, (fx2 - fx1) / aspect)
    fit = max(src_h, src_w / aspect)  # the largest crop that still fills the region somewhere
    height = clip.face_height() / float(rng.uniform(*face_share))
    height = max(need, min(height, fit))
    width = height * aspect
    cx = (fx1 + fx2) / 2 + float(rng.uniform(-CROP_OFFSET, CROP_OFFSET)) * width
    cy = (fy1 + fy2) / 2 + float(rng.uniform(-CROP_OFFSET, CROP_OFFSET)) * height

    def place(centre: float, size: float, src: float, lo: float, hi: float) -> float:
        start = centre - size / 2
        start = min(max(start, 0.0), src - size) if size <= src else (src - size) / 2
        # Every face box inside the crop (a little off its edges), whatever the clamping did.
        pad = 0.3 * max(0.0, size - (hi - lo))
        return min(max(start, hi + pad - size), lo - pad)

    x = place(cx, width, src_w, fx1, fx2)
    y = place(cy, height, src_h, fy1, fy2)
    return Framing(person, region, (x, y, height))
