"""The sound of a realistic video: own voices at different levels, each in its own room, mic noise.

Per person the placed pieces of their recording (5 ms fades at the edges) are brought to the
common active level (silero speech of the whole recording) plus their offset (+-8 dB), then
convolved with their own synthetic room: a unit direct path followed, after 2.5 ms, by Gaussian
noise decaying exponentially by 60 dB over the drawn RT60 (0.2-0.6 s), scaled to the drawn
direct-to-reverberant ratio (2-10 dB). The background (music or noise) is scaled to the planned
SNR against the reverberant speech, and low-level microphone noise (white, -70 to -55 dBFS RMS)
is added to it. As in the GRID mode every stem is quantized to 24 bits and the mix is their
integer sum; the stems are the reverberant speech as heard in the mix, and the dry speech (same
gain, not part of the mix) is kept beside them.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import fftconvolve

from voxhear.benchmarks.synth.audio import (
    FULL_SCALE,
    PEAK_DBFS,
    SPEECH_LEVEL_DBFS,
    Soundtrack,
    _active_rms_db,
    _any_active,
    _background,
    _faded,
    _power_db,
    measure_snr_db,
)
from voxhear.benchmarks.synth.options import SAMPLE_RATE
from voxhear.benchmarks.synth.wild_script import WildPlan

EARLY_S = 0.0025


def room_response(rt60_s: float, drr_db: float, seed: int) -> np.ndarray:
    """A synthetic impulse response: 1 at t=0, then exponentially decaying Gaussian noise.

    The tail starts after EARLY_S, decays by 60 dB (amplitude 1e-3) at `rt60_s` where it ends,
    and holds 10**(-drr_db/10) of the direct path's energy.
    """
    rng = np.random.default_rng(seed)
    n = int(round(rt60_s * SAMPLE_RATE))
    t = np.arange(n) / SAMPLE_RATE
    tail = rng.normal(0.0, 1.0, n) * np.exp(-np.log(1000.0) * t / rt60_s)
    tail[: int(round(EARLY_S * SAMPLE_RATE))] = 0.0
    tail *= np.sqrt(10.0 ** (-drr_db / 10.0) / np.sum(tail ** 2))
    tail[0] = 1.0
    return tail


def mic_noise(n: int, dbfs: float, seed: int) -> np.ndarray:
    """White Gaussian noise of RMS level `dbfs`."""
    return np.random.default_rng(seed).normal(0.0, 10.0 ** (dbfs / 20.0), n)


def build_wild_soundtrack(plan: WildPlan) -> tuple[Soundtrack, dict[str, np.ndarray]]:
    """The stems (reverberant speech per person, background with mic noise) and mix; and the dry speech.

    Returns:
        The soundtrack (as in the GRID mode; `speech_masks` are the placed silero masks) and,
        per person, the dry speech as 24-bit integers at the same gain as the stems.
    """
    n = plan.n_samples
    dry = {p: np.zeros(n, dtype=np.float64) for p in plan.people}
    masks = {p: np.zeros(n, dtype=bool) for p in plan.people}
    for piece in plan.pieces:
        voice = plan.voice(piece.person_id)
        end = min(piece.end_sample, n)
        length = end - piece.start_sample
        if length <= 0:
            continue
        audio = voice.audio[piece.source_start:piece.source_start + length].astype(np.float64)
        dry[piece.person_id][piece.start_sample:end] += _faded(audio)
        masks[piece.person_id][piece.start_sample:end] |= voice.speech[piece.source_start:piece.source_start + length]
    wet = {}
    for person in plan.people:
        voice = plan.voice(person)
        level = _active_rms_db(voice.audio, voice.speech)
        dry[person] *= 10.0 ** ((SPEECH_LEVEL_DBFS + plan.speech_gain_db[person] - level) / 20.0)
        room = room_response(plan.rt60_s[person], plan.drr_db[person], plan.reverb_seeds[person])
        wet[person] = fftconvolve(dry[person], room)[:n]
    background = _background(plan, n)  # type: ignore[arg-type]
    active = _any_active(masks)
    total = sum(wet.values())
    bg_db = _power_db(background[active] if active.any() else background)
    speech_db = _power_db(total[active]) if active.any() else bg_db
    background *= 10.0 ** ((speech_db - plan.snr_db - bg_db) / 20.0)
    background += mic_noise(n, plan.mic_noise_dbfs, plan.noise_seed)
    stems = {**wet, "background": background}
    peak = np.max(np.abs(sum(stems.values()))) or 1.0
    gain = min(1.0, 10.0 ** (PEAK_DBFS / 20.0) / peak)
    quantized = {k: np.round(v * gain * FULL_SCALE).astype(np.int32) for k, v in stems.items()}
    mix = np.sum(np.stack(list(quantized.values())), axis=0, dtype=np.int64)
    if np.abs(mix).max() >= FULL_SCALE:
        raise AssertionError("mix exceeds 24 bits despite the headroom")
    track = Soundtrack(stems=quantized, mix=mix.astype(np.int32), speech_masks=masks, snr_db=0.0)
    track.snr_db = measure_snr_db(track)
    dry_quantized = {p: np.clip(np.round(v * gain * FULL_SCALE), -FULL_SCALE, FULL_SCALE - 1).astype(np.int32)
                     for p, v in dry.items()}
    return track, dry_quantized
