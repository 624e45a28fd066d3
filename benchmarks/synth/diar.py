"""An audio-only development set for diarization (`voxhear synth OUT --audio-only`).

Each recording is a conversation of 2-4 real voices: the read speech of speech/ and the
single-person recordings of faces-wild/ (their audio only), one speaker per voice (recordings of
one person count once: a LibriSpeech reader, a CMU ARCTIC speaker). Turns are contiguous stretches
of a speaker's own recording as in the realistic video mode (`wild_script._turn`), shorter
(0.3-8 s, log-uniform); the next speaker is one of the others; turns overlap and listeners say
backchannels so that 10-25 % of the speech time (a share drawn per recording) has two or more
voices. Levels (+-8 dB), rooms (RT60 0.2-0.6 s), background (at the drawn SNR) and microphone
noise as in the realistic mode (`wild_audio.py`).

Output: `audio/<id>.flac` (the mix), `truth/<id>/` with `turns.rttm`, `mix.flac`, `stems/`,
`dry/` and `meta.json` (docs/synth-format.md, "Audio-only diarization set"), `all.rttm`,
ATTRIBUTION.md and manifest.json.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from voxhear.benchmarks.synth import vad
from voxhear.benchmarks.synth.audio import speech_segments
from voxhear.benchmarks.synth.options import SAMPLE_RATE, SynthOptions
from voxhear.benchmarks.synth.people import Recording, load_recording
from voxhear.benchmarks.synth.script import draw_background_offset, next_turn_start
from voxhear.benchmarks.synth.sources import BACKGROUND_FILES, SPEECH_FILES, licence_of, media_relative
from voxhear.benchmarks.synth.truth import (
    FORMAT_VERSION,
    _write_flac,
    background_meta,
    describe_source,
    rttm_text,
    write_audio,
)
from voxhear.benchmarks.synth.wild import WILD_DIR, Voice, load_voice, snippets, survey
from voxhear.benchmarks.synth.wild_audio import build_wild_soundtrack
from voxhear.benchmarks.synth.wild_script import (
    MIN_PART_S,
    OPENING_S,
    Piece,
    _seconds,
    _turn,
    draw_sound_conditions,
    placed_speech_mask,
)
from voxhear.benchmarks.synth.wild_truth import STEMS_NOTE, sound_meta
from voxhear.pipeline.io import atomic_write_text

log = logging.getLogger(__name__)

SPEAKERS = (2, 4)
TURN_MAX_S = 8.0
OVERLAP_SHARE = (0.10, 0.25)
OVERLAP_S = (0.3, 2.0)
GAP_S = (0.05, 0.6)
BACKCHANNEL_RATE = 0.15
BACKCHANNEL_CLEAR_S = 0.5
# Plans are re-drawn (another generator stream) until their overlap share is within this of
# the drawn target; the overlap probability is corrected after each try.
OVERLAP_TOLERANCE = 0.02
PLAN_TRIES = 40
IDS = "ABCD"


def speaker_of(path: Path) -> str:
    """Who speaks in a recording: one id per person, whatever the number of their recordings."""
    name = Path(path).name
    if m := re.match(r"cmu_arctic_us_([a-z]+)_", name):
        return f"cmu_arctic_{m.group(1)}"
    if m := re.match(r"(\d+)-\d+-\d+", name):
        return f"librispeech_{m.group(1)}"
    return Path(path).stem


@dataclass(slots=True)
class AudioPlan:
    """One audio-only conversation; `wild_audio.build_wild_soundtrack` renders it."""

    video_id: str
    seed: list[int]
    n_samples: int
    voices: dict[str, Voice]
    background: Recording
    background_offset: int
    snr_db: float
    speech_gain_db: dict[str, float]
    rt60_s: dict[str, float]
    drr_db: dict[str, float]
    reverb_seeds: dict[str, int]
    mic_noise_dbfs: float
    noise_seed: int
    overlap_target: float
    overlap_share: float = 0.0
    tries: int = 0
    pieces: list[Piece] = field(default_factory=list)

    @property
    def people(self) -> list[str]:
        return list(self.voices)

    def voice(self, person: str) -> Voice:
        return self.voices[person]


def voice_pool(media_dir: Path) -> list[Path]:
    """Every usable voice recording, sorted by path (the seed's draw order)."""
    media_dir = Path(media_dir)
    paths = [media_dir / "speech" / n for n in SPEECH_FILES if (media_dir / "speech" / n).exists()]
    if (media_dir / WILD_DIR).is_dir():
        paths += [media_dir / WILD_DIR / c.name for c in survey(media_dir, look=False) if c.speech_s > 0]
    return sorted(paths)


def plan_audio(options: SynthOptions, index: int, pool: list[Path], backgrounds: list[str]) -> AudioPlan:
    """Draw one conversation: speakers, levels, rooms, then turns until the overlap share fits."""
    seed = [options.seed, index]
    rng = np.random.default_rng(seed)
    by_speaker: dict[str, list[Path]] = {}
    for path in pool:
        by_speaker.setdefault(speaker_of(path), []).append(path)
    names = sorted(by_speaker)
    k = int(rng.integers(SPEAKERS[0], SPEAKERS[1] + 1))
    if len(names) < k:
        raise ValueError(f"{k} speakers wanted, {len(names)} found")
    chosen = [names[i] for i in rng.choice(len(names), size=k, replace=False)]
    voices = {}
    for person, speaker in zip(IDS, chosen):
        paths = by_speaker[speaker]
        voices[person] = load_voice(paths[int(rng.integers(len(paths)))])
    background_name = backgrounds[int(rng.integers(len(backgrounds)))]
    background = load_recording(options.media_dir / "background" / background_name, False)
    n_samples = int(round(options.duration_s * SAMPLE_RATE))
    plan = AudioPlan(
        video_id=f"synth-{index:04d}", seed=seed, n_samples=n_samples, voices=voices, background=background,
        background_offset=draw_background_offset(rng, background, n_samples),
        snr_db=float(rng.uniform(options.snr_db_min, options.snr_db_max)),
        **draw_sound_conditions(rng, list(voices)),
        overlap_target=float(rng.uniform(*OVERLAP_SHARE)),
    )
    probability, best = 0.3, None
    for attempt in range(PLAN_TRIES):
        pieces = _plan_conversation(np.random.default_rng([options.seed, index, attempt]), plan, probability)
        share = overlap_share(plan, pieces)
        if best is None or abs(share - plan.overlap_target) < abs(best[1] - plan.overlap_target):
            best = (pieces, share, attempt + 1)
        if abs(share - plan.overlap_target) <= OVERLAP_TOLERANCE:
            break
        probability = float(np.clip(probability + 1.5 * (plan.overlap_target - share), 0.0, 1.0))
    assert best is not None
    plan.pieces, plan.overlap_share, plan.tries = best
    return plan


def _plan_conversation(rng: np.random.Generator, plan: AudioPlan, overlap_prob: float) -> list[Piece]:
    limit = plan.n_samples - _seconds(0.1)
    people = plan.people
    cursor = {p: v.segments[int(rng.integers(len(v.segments)))][0] for p, v in plan.voices.items()}
    free_from = {p: 0 for p in people}
    t = _seconds(rng.uniform(*OPENING_S))
    person = people[int(rng.integers(len(people)))]
    pieces: list[Piece] = []
    turns: list[tuple[str, int, int]] = []
    while t < limit - _seconds(MIN_PART_S):
        t = max(t, free_from[person])
        if t >= limit - _seconds(MIN_PART_S):
            break
        new, cursor[person] = _turn(rng, plan.voices[person], person, t, cursor[person], limit, TURN_MAX_S)
        if not new:
            break
        pieces += new
        start, end = new[0].start_sample, new[-1].end_sample
        turns.append((person, start, end))
        free_from[person] = end + _seconds(vad.MERGE_GAP_S)
        others = [p for p in people if p != person]
        person = others[int(rng.integers(len(others)))]
        t = next_turn_start(rng, overlap_prob, start, end,
                            lambda: _seconds(rng.uniform(*OVERLAP_S)), lambda: _seconds(rng.uniform(*GAP_S)))
    return sorted(pieces + _backchannels(rng, plan, pieces, turns), key=lambda p: (p.start_sample, p.person_id))


def _backchannels(rng: np.random.Generator, plan: AudioPlan, pieces: list[Piece],
                  turns: list[tuple[str, int, int]]) -> list[Piece]:
    busy = {p: [(q.start_sample, q.end_sample) for q in pieces if q.person_id == p] for p in plan.people}
    clear = _seconds(BACKCHANNEL_CLEAR_S)
    out = []
    for speaker, start, end in turns:
        listeners = [p for p in plan.people if p != speaker]
        count = int(rng.poisson(BACKCHANNEL_RATE * (end - start) / SAMPLE_RATE))
        for _ in range(count):
            listener = listeners[int(rng.integers(len(listeners)))]
            shorts = snippets(plan.voices[listener])
            if not shorts:
                continue
            s0, s1 = shorts[int(rng.integers(len(shorts)))]
            if end - start <= (s1 - s0) + 2 * _seconds(0.3):
                continue
            at = int(rng.integers(start + _seconds(0.3), end - _seconds(0.3) - (s1 - s0)))
            if all(at + (s1 - s0) + clear <= b0 or at >= b1 + clear for b0, b1 in busy[listener]):
                out.append(Piece(listener, at, s0, s1, "backchannel"))
                busy[listener].append((at, at + s1 - s0))
    return out


def overlap_share(plan: AudioPlan, pieces: list[Piece]) -> float:
    """Share of the speech time (talking rule, as in the RTTM) with two or more speakers."""
    count = np.zeros(plan.n_samples, dtype=np.int16)
    for person in plan.people:
        mask = placed_speech_mask(plan, pieces, person)
        count += vad.segments_to_mask(vad.clean_segments(mask), plan.n_samples)
    speech = int((count >= 1).sum())
    return float((count >= 2).sum() / speech) if speech else 0.0


def compose_audio_dataset(options: SynthOptions) -> list[Path]:
    """Compose `options.videos` audio-only conversations into `options.out_dir`; returns the mixes."""
    media_dir = options.media_dir
    pool = voice_pool(media_dir)
    backgrounds = sorted(n for n in BACKGROUND_FILES if (media_dir / "background" / n).exists())
    if not backgrounds:
        raise ValueError("no background recordings found")
    out = options.out_dir
    paths, plans, rttm = [], [], []
    for index in range(options.first_index, options.first_index + options.videos):
        plan = plan_audio(options, index, pool, backgrounds)
        track, dry = build_wild_soundtrack(plan)  # type: ignore[arg-type]
        truth_dir = out / "truth" / plan.video_id
        write_audio(track, truth_dir, dry)
        text = rttm_text(plan.video_id, speech_segments(track))
        atomic_write_text(truth_dir / "turns.rttm", text)
        rttm.append(text)
        atomic_write_text(truth_dir / "meta.json", json.dumps(_meta(plan, track, media_dir), indent=2) + "\n")
        path = out / "audio" / f"{plan.video_id}.flac"
        _write_flac(path, track.mix)
        paths.append(path)
        plans.append(plan)
        log.info("composed %s (%d speakers, overlap %.3f)", path, len(plan.voices), plan.overlap_share)
    atomic_write_text(out / "all.rttm", "".join(rttm))
    atomic_write_text(out / "ATTRIBUTION.md", _attribution(plans, media_dir))
    opts = options.to_json()
    opts.pop("out_dir")
    opts.pop("media_dir")
    atomic_write_text(out / "manifest.json", json.dumps(
        {"manifest_version": 1, "tool": "voxhear synth --audio-only", "options": opts,
         "recordings": [{"id": p.video_id, "seed": p.seed, "audio": f"audio/{p.video_id}.flac",
                         "truth": f"truth/{p.video_id}"} for p in plans]}, indent=2) + "\n")
    return paths


def _meta(plan: AudioPlan, track, media_dir: Path) -> dict:
    people = {p: {**describe_source(v.path, media_dir), "speaker": speaker_of(v.path), **sound_meta(plan, p)}
              for p, v in plan.voices.items()}
    return {
        "format_version": FORMAT_VERSION, "video_id": plan.video_id, "seed": plan.seed, "audio_only": True,
        "duration_s": plan.n_samples / SAMPLE_RATE, "sample_rate": SAMPLE_RATE, "people": people,
        "background": background_meta(plan, media_dir),
        "mic_noise_dbfs": round(plan.mic_noise_dbfs, 3),
        "stems": STEMS_NOTE,
        "overlap_share_target": round(plan.overlap_target, 4), "overlap_share": round(plan.overlap_share, 4),
        "plan_tries": plan.tries, "snr_db_planned": round(plan.snr_db, 3), "snr_db": round(track.snr_db, 3),
        "n_utterances": sum(p.kind == "turn" for p in plan.pieces),
        "n_backchannels": sum(p.kind == "backchannel" for p in plan.pieces),
    }


def _attribution(plans: list[AudioPlan], media_dir: Path) -> str:
    lines = ["# Attribution", "", "Composed by `voxhear synth --audio-only` from the recordings below (each under its",
             "licence; faces-wild material is for internal development only and must not be published).", ""]
    for plan in plans:
        lines += [f"## {plan.video_id}", ""]
        for person, voice in plan.voices.items():
            lic = licence_of(voice.path)
            lines.append(f"- {person}: `{media_relative(voice.path, media_dir)}`, {lic.corpus}, {lic.licence}")
        lic = licence_of(plan.background.path)
        lines += [f"- background: `{media_relative(plan.background.path, media_dir)}`, {lic.corpus}, {lic.licence}",
                  ""]
    return "\n".join(lines) + "\n"
