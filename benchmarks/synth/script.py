"""The deterministic plan of one composed conversation: who speaks when, and what the camera shows.

Every random choice of a video is drawn here, from one generator seeded by (dataset seed, video
index), in a fixed order; rendering and ground truth only execute the plan. Two clocks are used:
speech is planned in 40 ms slots (GRID's 25 fps, 640 samples each), shots in output frames.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import numpy as np

from voxhear.benchmarks.synth import vad
from voxhear.benchmarks.synth.options import PLAN_FPS, SAMPLE_RATE, SAMPLES_PER_SLOT, SynthOptions
from voxhear.benchmarks.synth.people import GridClip, MediaLibrary, Recording

ON_SCREEN = ("A", "B")
OFF_SCREEN = "C"
KIND_TWO_SHOT = "two_shot"

# Turn-taking: silence before the first turn, pauses between turns and between the repeated
# utterances of one turn, and how far an overlapping turn reaches back (all in 40 ms slots).
OPENING_SLOTS = (4, 13)
TURN_GAP_SLOTS = (5, 21)
UTTERANCE_GAP_SLOTS = (2, 9)
OVERLAP_SLOTS = (8, 26)
# How many times a turn plays its speaker's sentence (a GRID sentence is about 2 s): mostly once.
UTTERANCES_PER_TURN = (1, 1, 1, 2, 2, 3)
# An off-screen voice says a stretch of its recording of at most this long.
OFFSCREEN_MAX_S = 3.5
OFFSCREEN_PAD_S = 0.1
# Who the camera shows when it does not show both: the one speaking, mostly.
SPEAKER_SHOT_PROB = 0.7
# Framing: the face-box height as a share of the canvas height (of a 16:9 canvas as wide, on a
# narrower one, so that two faces still fit side by side), and where its centre may lie as
# shares of the canvas.
CLOSE_FACE_HEIGHT = (0.36, 0.52)
TWO_SHOT_FACE_HEIGHT = (0.24, 0.31)
CLOSE_CENTRE_X = (0.36, 0.64)
CLOSE_CENTRE_Y = (0.40, 0.50)
TWO_SHOT_CENTRE_X = ((0.22, 0.32), (0.68, 0.78))
TWO_SHOT_CENTRE_Y = (0.40, 0.50)
# Slow camera motion over a shot: zoom factor range and drift as shares of the canvas.
ZOOM = (0.96, 1.06)
DRIFT_X = 0.03
DRIFT_Y = 0.02
BOX_MARGIN_PX = 2.0
# Largest background pan over one shot, in pixels; the backdrop textures are this much larger.
PAN_PX = 24


@dataclass(frozen=True, slots=True)
class Utterance:
    """One piece of a recording placed on the video timeline.

    Attributes:
        person_id: ``A``, ``B`` (on screen) or ``C`` (off screen).
        start_slot: Where it starts on the timeline, in 40 ms slots.
        source_start: First sample of the recording that is placed.
        source_end: End (exclusive) of the placed samples.
        words: Its words, in order, where the source has a transcript.
    """

    person_id: str
    start_slot: int
    source_start: int
    source_end: int
    words: tuple[str, ...] = ()

    @property
    def start_sample(self) -> int:
        return self.start_slot * SAMPLES_PER_SLOT

    @property
    def end_sample(self) -> int:
        return self.start_sample + self.source_end - self.source_start

    @property
    def end_slot(self) -> int:
        return -(-self.end_sample // SAMPLES_PER_SLOT)


@dataclass(frozen=True, slots=True)
class Placement:
    """Where one person's face box sits in one shot: at its first and at its last frame.

    The face box centre and the scale move linearly in between, so a box inside the canvas at
    both ends is inside it on every frame.
    """

    person_id: str
    scale: tuple[float, float]
    centre: tuple[tuple[float, float], tuple[float, float]]


@dataclass(frozen=True, slots=True)
class Shot:
    """One camera shot, in output frames [start_frame, end_frame)."""

    index: int
    start_frame: int
    end_frame: int
    kind: str
    placements: tuple[Placement, ...]
    pan: tuple[tuple[int, int], tuple[int, int]]

    @property
    def people(self) -> tuple[str, ...]:
        return tuple(p.person_id for p in self.placements)


class CastAndShots:
    """What the plans of both modes (GRID's `VideoPlan`, the realistic `WildPlan`) share: A and B on
    screen, maybe C off screen, and the shots; a mix-in of the two slotted dataclasses."""

    __slots__ = ()
    offscreen: object | None
    shots: list[Shot]

    @property
    def people(self) -> list[str]:
        return [*ON_SCREEN, *([OFF_SCREEN] if self.offscreen is not None else [])]

    def shot_of_frame(self, frame: int) -> Shot:
        for shot in self.shots:
            if shot.start_frame <= frame < shot.end_frame:
                return shot
        raise IndexError(f"frame {frame} is outside every shot")


@dataclass(slots=True)
class VideoPlan(CastAndShots):
    """Everything one composed video is made of; rendering and truth follow it to the letter."""

    video_id: str
    seed: list[int]
    fps: float
    width: int
    height: int
    n_slots: int
    n_frames: int
    clips: dict[str, GridClip]
    offscreen: Recording | None
    background: Recording
    background_offset: int
    snr_db: float
    speech_gain_db: dict[str, float]
    backdrop_seeds: dict[str, int]
    utterances: list[Utterance] = field(default_factory=list)
    shots: list[Shot] = field(default_factory=list)
    # Per on-screen person, the GRID source frame shown in each slot, and whether it is spoken.
    source_frame: dict[str, np.ndarray] = field(default_factory=dict)
    mouthing: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def n_samples(self) -> int:
        return self.n_slots * SAMPLES_PER_SLOT

    def slot_of_frame(self, frame: int) -> int:
        """The 40 ms slot an output frame shows (frame starts are mapped onto the slot clock)."""
        return min(self.n_slots - 1, int(np.floor(frame * PLAN_FPS / self.fps + 1e-9)))


def plan_video(options: SynthOptions, index: int, library: MediaLibrary) -> VideoPlan:
    """Draw the whole plan of video `index` from the dataset seed.

    Args:
        options: Dataset options.
        index: Video index; the id is ``synth-{index:04d}``.
        library: The shared media (two different GRID clips, a background and, with three
            people, an off-screen voice are drawn from it).

    Returns:
        The video's plan.
    """
    seed = [options.seed, index]
    rng = np.random.default_rng(seed)
    clips, offscreen, background = draw_recordings(rng, options, library, library.grid_names, library.grid,
                                                   "at least two GRID clips are needed")
    n_slots = int(round(options.duration_s * PLAN_FPS))
    plan = VideoPlan(
        video_id=f"synth-{index:04d}", seed=seed, fps=options.fps, width=options.width,
        height=options.height, n_slots=n_slots, n_frames=int(round(options.duration_s * options.fps)),
        clips=clips, offscreen=offscreen, background=background,
        background_offset=draw_background_offset(rng, background, n_slots * SAMPLES_PER_SLOT),
        snr_db=float(rng.uniform(options.snr_db_min, options.snr_db_max)),
        # People do not speak equally loud; +-3 dB around a common level.
        speech_gain_db={p: float(rng.uniform(-3.0, 3.0)) for p in ("A", "B", "C")},
        backdrop_seeds={k: int(rng.integers(2**31)) for k in ("A", "B", KIND_TWO_SHOT)},
    )
    plan.utterances = _plan_turns(rng, options, plan)
    _fill_tracks(plan)
    plan.shots = _plan_shots(rng, options, plan)
    return plan


_Person = TypeVar("_Person")


class VoiceLibrary(Protocol):
    """What `draw_recordings` needs of a media library (GRID's MediaLibrary, the realistic WildLibrary)."""

    speech_names: list[str]
    background_names: list[str]

    def speech(self, name: str) -> Any: ...

    def background(self, name: str) -> Recording: ...


def draw_recordings(rng: np.random.Generator, options: SynthOptions, library: VoiceLibrary, names: list[str],
                    load_person: Callable[[str], _Person], too_few: str) -> tuple[dict[str, _Person], Any, Recording]:
    """The recordings of one video, drawn in the seed's order (both modes draw them alike).

    Two different people of `names` (loaded by `load_person`) for A and B; with ``--people 3`` an
    off-screen voice of speech/ (else None); a background.

    Raises:
        ValueError: `too_few` when `names` holds fewer than two people, or speech/ or the
            backgrounds are empty.
    """
    if len(names) < 2:
        raise ValueError(too_few)
    pick = rng.choice(len(names), size=2, replace=False)
    clips = {"A": load_person(names[pick[0]]), "B": load_person(names[pick[1]])}
    offscreen = None
    if options.people == 3:
        if not library.speech_names:
            raise ValueError("people=3 needs recordings in speech/")
        offscreen = library.speech(library.speech_names[int(rng.integers(len(library.speech_names)))])
    if not library.background_names:
        raise ValueError("no background recordings found")
    background = library.background(library.background_names[int(rng.integers(len(library.background_names)))])
    return clips, offscreen, background


def draw_background_offset(rng: np.random.Generator, background: Recording, n_samples: int) -> int:
    """Where in the background recording the video's sound starts (0 when it has to loop)."""
    spare = len(background.audio) - n_samples
    return int(rng.integers(spare)) if spare > 0 else 0


def other_on_screen(person: str) -> str:
    """The other of the two on-screen people A and B."""
    return "B" if person == "A" else "A"


def next_speaker(rng: np.random.Generator, options: SynthOptions, who: str, previous: str, turn: int,
                 offscreen_available: bool) -> str:
    """Who takes turn number `turn` (0 first): `who`, the on-screen person whose turn it is, unless
    the off-screen voice interjects.

    It never interjects twice in a row; it surely takes the second turn (later ones by chance,
    `options.offscreen_share`), so that even a short video with three people has the third voice.
    """
    if offscreen_available and previous != OFF_SCREEN and (turn == 1 or rng.random() < options.offscreen_share):
        return OFF_SCREEN
    return who


def next_turn_start(rng: np.random.Generator, overlap_prob: float, turn_start: int, turn_end: int,
                    draw_overlap: Callable[[], int], draw_gap: Callable[[], int]) -> int:
    """Where the turn after [turn_start, turn_end) starts, on the same clock (slots or samples).

    With `overlap_prob` the next speaker cuts in `draw_overlap()` before the end, but never
    before the turn's middle; else it starts `draw_gap()` after the end.
    """
    if rng.random() < overlap_prob:
        return max(turn_end - draw_overlap(), (turn_start + turn_end) // 2)
    return turn_end + draw_gap()


def _plan_turns(rng: np.random.Generator, options: SynthOptions, plan: VideoPlan) -> list[Utterance]:
    """Alternate A and B (with C now and then), pausing or overlapping between turns.

    Utterances are never cut: one that does not fit before the end is left out, so every
    placed GRID sentence is whole and its transcript is exact.
    """
    utterances: list[Utterance] = []
    limit = plan.n_slots - 2
    t = int(rng.integers(*OPENING_SLOTS))
    who = ON_SCREEN[int(rng.integers(2))]
    free_from = {"A": 0, "B": 0, "C": 0}
    turn = 0
    offscreen_fits = plan.offscreen is not None
    person = ""
    while t < limit:
        person = next_speaker(rng, options, who, person, turn, offscreen_fits)
        turn += 1
        t = max(t, free_from[person])
        if person == OFF_SCREEN:
            pieces = [_offscreen_piece(rng, plan.offscreen, t)]
        else:
            clip = plan.clips[person]
            pieces, start = [], t
            # The opening turn is one sentence, so that a short video still hears both people.
            repeats = 1 if turn == 1 else int(rng.choice(UTTERANCES_PER_TURN))
            for _ in range(repeats):
                first, end = clip.spoken
                pieces.append(Utterance(person, start, first * SAMPLES_PER_SLOT,
                                        end * SAMPLES_PER_SLOT, tuple(clip.words)))
                start = pieces[-1].end_slot + int(rng.integers(*UTTERANCE_GAP_SLOTS))
        pieces = [u for u in pieces if u.end_slot <= limit]
        if not pieces and person == OFF_SCREEN:
            offscreen_fits = False  # its stretches are the longest; an on-screen turn may still fit
            person = ""
            continue
        if not pieces:
            break
        utterances.extend(pieces)
        turn_start, turn_end = pieces[0].start_slot, pieces[-1].end_slot
        free_from[person] = turn_end + 1
        if person != OFF_SCREEN:
            who = other_on_screen(who)
        t = next_turn_start(rng, options.overlap_prob, turn_start, turn_end,
                            lambda: int(rng.integers(*OVERLAP_SLOTS)), lambda: int(rng.integers(*TURN_GAP_SLOTS)))
    return utterances


def _offscreen_piece(rng: np.random.Generator, voice: Recording, start_slot: int) -> Utterance:
    """A stretch of whole speech segments (by the VAD rule) of at most OFFSCREEN_MAX_S."""
    assert voice.speech is not None
    spans = vad.clean_segments(voice.speech) or [(0, len(voice.audio))]
    i = int(rng.integers(len(spans)))
    begin, end = spans[i]
    max_len = int(OFFSCREEN_MAX_S * SAMPLE_RATE)
    for _, e in spans[i + 1:]:
        if e - begin > max_len:
            break
        end = e
    pad = int(OFFSCREEN_PAD_S * SAMPLE_RATE)
    begin, end = max(0, begin - pad), min(len(voice.audio), end + pad, begin + max_len)
    return Utterance(OFF_SCREEN, start_slot, begin, end)


def _fill_tracks(plan: VideoPlan) -> None:
    """Which GRID frame each on-screen person shows in each slot.

    Inside an utterance the clip plays (lips with their own voice); everywhere else the person
    listens: the clip's silent frames back and forth, continuing where the last listening
    stretch stopped.
    """
    for person in ON_SCREEN:
        clip = plan.clips[person]
        frames = np.full(plan.n_slots, -1, dtype=np.int64)
        mouthing = np.zeros(plan.n_slots, dtype=bool)
        for u in plan.utterances:
            if u.person_id != person:
                continue
            first = u.source_start // SAMPLES_PER_SLOT
            count = (u.source_end - u.source_start) // SAMPLES_PER_SLOT
            frames[u.start_slot:u.start_slot + count] = np.arange(first, first + count)
            mouthing[u.start_slot:u.start_slot + count] = True
        step = 0
        for slot in np.flatnonzero(frames < 0):
            frames[slot] = clip.listening_frame(step)
            step += 1
        plan.source_frame[person] = frames
        plan.mouthing[person] = mouthing


def _plan_shots(rng: np.random.Generator, options: SynthOptions, plan: VideoPlan) -> list[Shot]:
    def talking_at(frame: int) -> list[str]:
        slot = plan.slot_of_frame(frame)
        return [p for p in ON_SCREEN if plan.mouthing[p][slot]]

    def place(kind: str, left: str) -> tuple[Placement, ...]:
        if kind == KIND_TWO_SHOT:
            return (_place(rng, plan, left, TWO_SHOT_FACE_HEIGHT, TWO_SHOT_CENTRE_X[0], TWO_SHOT_CENTRE_Y),
                    _place(rng, plan, other_on_screen(left), TWO_SHOT_FACE_HEIGHT, TWO_SHOT_CENTRE_X[1],
                           TWO_SHOT_CENTRE_Y))
        return (_place(rng, plan, kind, CLOSE_FACE_HEIGHT, CLOSE_CENTRE_X, CLOSE_CENTRE_Y),)

    return plan_shots(rng, options, plan.n_frames, talking_at, place)


def plan_shots(rng: np.random.Generator, options: SynthOptions, n_frames: int,
               talking_at: Callable[[int], list[str]], place: Callable[[str, str], tuple]) -> list[Shot]:
    """The shots of a video (both modes): boundaries, kinds, placements and background pans.

    Args:
        rng: The video's generator (draws in a fixed order: boundaries, the two-shot's left
            person, then per shot its kind, its placements and its pan).
        options: Dataset options (shot count or mean length, shortest shot, two-shot probability).
        n_frames: Output frames of the video.
        talking_at: The on-screen people speaking at an output frame (the shot's middle one).
        place: (kind, left person of a two-shot) -> the shot's placements, drawn from `rng`.
    """
    min_len = max(1, int(round(options.min_shot_s * options.fps)))
    n_shots = options.shots or max(1, int(round(options.duration_s / options.mean_shot_s)))
    n_shots = max(1, min(n_shots, n_frames // min_len))
    extra = n_frames - n_shots * min_len
    shares = np.cumsum(rng.dirichlet(np.full(n_shots, 2.0)))
    bounds = [0] + [i * min_len + int(np.floor(extra * shares[i - 1])) for i in range(1, n_shots)] + [n_frames]
    left = ON_SCREEN[int(rng.integers(2))]
    shots: list[Shot] = []
    previous = ""
    for index in range(n_shots):
        start, end = bounds[index], bounds[index + 1]
        kind = _shot_kind(rng, options, talking_at((start + end) // 2), previous)
        placements = place(kind, left)
        pan = tuple((int(rng.integers(PAN_PX + 1)), int(rng.integers(PAN_PX + 1))) for _ in range(2))
        shots.append(Shot(index, start, end, kind, placements, pan))  # type: ignore[arg-type]
        previous = kind
    return shots


def _shot_kind(rng: np.random.Generator, options: SynthOptions, talking: list[str], previous: str) -> str:
    """Two-shot sometimes; else mostly the speaker, sometimes the listener; never the same twice.

    A cut to the same framing would not be a visible cut, and shot boundaries are scored.
    `talking`: the on-screen people speaking in the shot's middle frame.
    """
    if previous != KIND_TWO_SHOT and rng.random() < options.two_shot_prob:
        return KIND_TWO_SHOT
    if len(talking) == 1:
        kind = talking[0] if rng.random() < SPEAKER_SHOT_PROB else other_on_screen(talking[0])
    else:
        kind = ON_SCREEN[int(rng.integers(2))]
    if kind == previous:
        kind = other_on_screen(kind)
    return kind


def _place(rng: np.random.Generator, plan: VideoPlan, person: str, face_height: tuple[float, float],
           centre_x: tuple[float, float], centre_y: tuple[float, float]) -> Placement:
    """Scale and centre of a face at the first and last frame, face box kept inside the canvas."""
    x1, y1, x2, y2 = plan.clips[person].face_box
    box_w, box_h = x2 - x1, y2 - y1
    w, h = plan.width, plan.height
    s0 = float(rng.uniform(*face_height)) * min(h, w * 9 / 16) / box_h
    s1 = s0 * float(rng.uniform(*ZOOM))
    c0 = (float(rng.uniform(*centre_x)) * w, float(rng.uniform(*centre_y)) * h)
    c1 = (c0[0] + float(rng.uniform(-DRIFT_X, DRIFT_X)) * w, c0[1] + float(rng.uniform(-DRIFT_Y, DRIFT_Y)) * h)

    def inside(scale: float, centre: tuple[float, float]) -> tuple[float, float]:
        half_w, half_h = scale * box_w / 2 + BOX_MARGIN_PX, scale * box_h / 2 + BOX_MARGIN_PX
        return (min(max(centre[0], half_w), w - half_w), min(max(centre[1], half_h), h - half_h))

    return Placement(person, (s0, s1), (inside(s0, c0), inside(s1, c1)))
