"""Stems and mix of a composed video, built so that the mix is exactly the sum of the stems.

Every stem is quantized to 24-bit integers first and the mix is the integer sum of the
quantized stems, so `mix.flac` equals the sum of the `stems/*.flac` sample for sample after
reading them back (FLAC is lossless; the sums stay far inside 24 bits because of the headroom).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from voxhear.benchmarks.synth import vad
from voxhear.benchmarks.synth.options import SAMPLE_RATE
from voxhear.benchmarks.synth.script import ON_SCREEN, VideoPlan

FULL_SCALE = 2 ** 23  # 24-bit PCM
# Active-speech level every voice is brought to before its +-3 dB personal offset.
SPEECH_LEVEL_DBFS = -26.0
# The mix peaks at most here, leaving room so that summing never clips.
PEAK_DBFS = -3.0
FADE_S = 0.005


@dataclass(slots=True)
class Soundtrack:
    """The audio of one video, as 24-bit integers in int32 arrays of equal length.

    Attributes:
        stems: Per person id (``A``, ``B``, maybe ``C``) the placed speech, plus ``background``.
        mix: The sample-wise sum of all stems.
        speech_masks: Per person, the placed speech mask (VAD rule steps 1-2, before cleaning).
        snr_db: The speech-to-background ratio actually realized (see `measure_snr_db`).
    """

    stems: dict[str, np.ndarray]
    mix: np.ndarray
    speech_masks: dict[str, np.ndarray]
    snr_db: float

    def as_float(self, name: str) -> np.ndarray:
        """A stem (or ``mix``) as float64 in [-1, 1), exactly as soundfile reads it back."""
        data = self.mix if name == "mix" else self.stems[name]
        return data.astype(np.float64) / FULL_SCALE


def build_soundtrack(plan: VideoPlan) -> Soundtrack:
    """Place every utterance, add the background at the planned SNR and quantize."""
    n = plan.n_samples
    speech = {p: np.zeros(n, dtype=np.float64) for p in plan.people}
    masks = {p: np.zeros(n, dtype=bool) for p in plan.people}
    sources = {p: plan.clips[p] for p in ON_SCREEN}
    for u in plan.utterances:
        source = plan.offscreen if u.person_id not in ON_SCREEN else sources[u.person_id]
        assert source is not None and source.speech is not None
        place_speech(speech[u.person_id], masks[u.person_id], source.audio, source.speech, u.source_start,
                     u.start_sample, u.end_sample)
    for person in plan.people:
        source = plan.offscreen if person not in ON_SCREEN else sources[person]
        assert source is not None and source.speech is not None
        speech[person] *= speech_level_gain(source.audio, source.speech, plan.speech_gain_db[person])
    background = background_at_snr(plan, speech, masks)
    track, _ = quantized_soundtrack({**speech, "background": background}, masks)
    return track


def place_speech(speech: np.ndarray, mask: np.ndarray, audio: np.ndarray, audio_speech: np.ndarray,
                 source_start: int, start: int, end: int) -> None:
    """Add the recording `audio` from `source_start` to one person's timeline `speech` over
    [start, end) (faded edges), and its speech mask `audio_speech` to their `mask`."""
    length = end - start
    speech[start:end] += _faded(audio[source_start:source_start + length].astype(np.float64))
    mask[start:end] |= audio_speech[source_start:source_start + length]


def speech_level_gain(audio: np.ndarray, audio_speech: np.ndarray, offset_db: float) -> float:
    """The factor that brings a person's recording to the common active speech level plus their offset."""
    return 10.0 ** ((SPEECH_LEVEL_DBFS + offset_db - _active_rms_db(audio, audio_speech)) / 20.0)


def background_at_snr(plan, speech: dict[str, np.ndarray], masks: dict[str, np.ndarray]) -> np.ndarray:
    """The plan's background stretch scaled so that the summed `speech` is `plan.snr_db` above it
    over the samples where anyone speaks (over all samples when nobody does)."""
    background = _background(plan, plan.n_samples)
    total_speech = sum(speech.values())
    active = _any_active(masks)
    bg_db = _power_db(background[active] if active.any() else background)
    speech_db = _power_db(total_speech[active]) if active.any() else bg_db
    background *= 10.0 ** ((speech_db - plan.snr_db - bg_db) / 20.0)
    return background


def quantized_soundtrack(stems: dict[str, np.ndarray], masks: dict[str, np.ndarray]) -> tuple[Soundtrack, float]:
    """The soundtrack of float `stems`, quantized to 24 bits, and the gain applied before quantizing.

    One gain for all stems keeps the summed mix PEAK_DBFS below full scale (never louder than
    the stems are); the mix is the integer sum of the quantized stems, so it equals their sum
    exactly after a FLAC round trip.
    """
    peak = np.max(np.abs(sum(stems.values()))) or 1.0
    gain = min(1.0, 10.0 ** (PEAK_DBFS / 20.0) / peak)
    quantized = {k: np.round(v * gain * FULL_SCALE).astype(np.int32) for k, v in stems.items()}
    mix = np.sum(np.stack(list(quantized.values())), axis=0, dtype=np.int64)
    if np.abs(mix).max() >= FULL_SCALE:
        raise AssertionError("mix exceeds 24 bits despite the headroom")
    track = Soundtrack(stems=quantized, mix=mix.astype(np.int32), speech_masks=masks, snr_db=0.0)
    track.snr_db = measure_snr_db(track)
    return track, gain


def measure_snr_db(track: Soundtrack) -> float:
    """10 log10 of speech power over background power, both over the samples where anyone speaks.

    Speech is the sum of the speech stems; "speaks" is the per-sample VAD mask before cleaning.
    """
    speech = sum(track.as_float(p) for p in track.speech_masks)
    background = track.as_float("background")
    active = _any_active(track.speech_masks)
    if not active.any():
        return float("nan")
    return _power_db(speech[active]) - _power_db(background[active])


def speech_segments(track: Soundtrack) -> dict[str, list[tuple[int, int]]]:
    """Per person, the speech segments in samples after the whole VAD rule (gaps, short bits)."""
    return {p: vad.clean_segments(mask) for p, mask in track.speech_masks.items()}


def _background(plan: VideoPlan, n: int) -> np.ndarray:
    audio = plan.background.audio.astype(np.float64)
    if len(audio) >= plan.background_offset + n:
        return audio[plan.background_offset:plan.background_offset + n].copy()
    # Shorter than the video: loop it (a seam every loop, documented in the format).
    return np.resize(audio, n)


def _faded(piece: np.ndarray) -> np.ndarray:
    """Short raised-cosine fades, so a piece cut out of room noise does not click."""
    fade = min(len(piece) // 2, int(FADE_S * SAMPLE_RATE))
    if fade > 0:
        ramp = 0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, fade))
        piece = piece.copy()
        piece[:fade] *= ramp
        piece[-fade:] *= ramp[::-1]
    return piece


def _active_rms_db(audio: np.ndarray, mask: np.ndarray) -> float:
    return _power_db(audio[mask] if mask.any() else audio)


def _power_db(x: np.ndarray) -> float:
    return float(10.0 * np.log10(np.mean(np.square(x, dtype=np.float64)) + 1e-20))


def _any_active(masks: dict[str, np.ndarray]) -> np.ndarray:
    return np.logical_or.reduce(list(masks.values()))
