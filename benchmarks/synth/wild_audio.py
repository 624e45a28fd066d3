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
    Soundtrack,
    background_at_snr,
    place_speech,
    quantized_soundtrack,
    speech_level_gain,
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
        if end <= piece.start_sample:
            continue
        place_speech(dry[piece.person_id], masks[piece.person_id], voice.audio, voice.speech, piece.source_start,
                     piece.start_sample, end)
    wet = {}
    for person in plan.people:
        voice = plan.voice(person)
        dry[person] *= speech_level_gain(voice.audio, voice.speech, plan.speech_gain_db[person])
        room = room_response(plan.rt60_s[person], plan.drr_db[person], plan.reverb_seeds[person])
        wet[person] = fftconvolve(dry[person], room)[:n]
    background = background_at_snr(plan, wet, masks)
    background += mic_noise(n, plan.mic_noise_dbfs, plan.noise_seed)
    track, gain = quantized_soundtrack({**wet, "background": background}, masks)
    dry_quantized = {p: np.clip(np.round(v * gain * FULL_SCALE), -FULL_SCALE, FULL_SCALE - 1).astype(np.int32)
                     for p, v in dry.items()}
    return track, dry_quantized
