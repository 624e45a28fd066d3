"""The separator's residue returned to the speech (stages/audio/residue.py): it takes back the
speech's own echo from the background, leaves music and noise there, and reads the same in spans."""

from __future__ import annotations

import numpy as np
from scipy.signal import fftconvolve

from tests.stages.audio.conftest import RATE, load_speech, needs_media
from voxhear.stages.audio.residue import ResidueReturned, fit_residue_gains

TAPS, RIDGE = 16, 1e-3


class _Array:
    """An array as a `Signal` (zeros outside it)."""

    def __init__(self, values: np.ndarray) -> None:
        self.values, self.length = np.asarray(values, np.float32), len(values)

    def read(self, start: int, stop: int) -> np.ndarray:
        out = np.zeros(stop - start, np.float32)
        lo, hi = max(start, 0), min(stop, self.length)
        if hi > lo:
            out[lo - start : hi - start] = self.values[lo:hi]
        return out


def _energy_db(values: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(np.square(values, dtype=np.float64)) + 1e-20))


def _returned(speech: np.ndarray, mix: np.ndarray) -> np.ndarray:
    gains = fit_residue_gains(_Array(speech), _Array(mix), RATE, TAPS, RIDGE)
    return ResidueReturned(_Array(speech), RATE, gains).read(0, len(mix)).astype(np.float64)


def _speech_and_room() -> tuple[np.ndarray, np.ndarray]:
    """A real recording and its late reverberation (a decaying noise tail from 20 to 200 ms: what
    a separator that takes the room out leaves in the background)."""
    rng = np.random.default_rng(3)
    dry = np.concatenate([load_speech("cmu_arctic_us_aew_a0001.wav"), load_speech("cmu_arctic_us_axb_a0005.wav")])
    t = np.arange(int(0.2 * RATE)) / RATE
    tail = rng.standard_normal(len(t)) * np.exp(-t / 0.06) * (t >= 0.02)
    echo = fftconvolve(dry, tail)[: len(dry)]
    echo *= 10 ** (-10 / 20) * np.sqrt(np.mean(dry**2) / np.mean(echo**2))  # 10 dB under the voice
    return dry.astype(np.float64), echo


@needs_media
def test_the_speechs_echo_goes_back_to_the_speech_and_music_stays_in_the_background():
    dry, echo = _speech_and_room()
    music = load_speech("../background/Kevin_MacLeod_-_Vibe_Ace.hq.ogg")[RATE * 5 : RATE * 5 + len(dry)]
    music = music * 10 ** (-15 / 20) * np.sqrt(np.mean(dry**2) / np.mean(music**2))
    mix = dry + echo + music
    speech = _returned(dry, mix)
    residue = speech - dry
    # Most of the echo moves to the speech (its error energy falls by more than 6 dB) ...
    assert _energy_db(echo - residue) < _energy_db(echo) - 6
    # ... and the music the speech does not predict stays in the background (changed by < 0.5 dB).
    background = mix - speech
    assert _energy_db(background - music) < _energy_db(music) - 6
    assert abs(_energy_db(background) - _energy_db(music)) < 0.5 + abs(_energy_db(music + echo) - _energy_db(music))


@needs_media
def test_a_background_the_speech_does_not_predict_is_left_alone():
    names = ("cmu_arctic_us_axb_a0004.wav", "cmu_arctic_us_axb_a0006.wav", "cmu_arctic_us_aew_a0002.wav",
             "cmu_arctic_us_aew_a0003.wav")  # fmt: skip
    dry = np.concatenate([load_speech(name) for name in names]).astype(np.float64)  # 12 s
    noise = np.random.default_rng(1).standard_normal(len(dry)) * 0.05
    residue = _returned(dry, dry + noise) - dry
    # 16 taps per bin fitted to some 750 frames take about 16 / 750 of a noise's power by chance
    # (-17 dB); nothing of it is the speech's.
    assert _energy_db(residue) < _energy_db(noise) - 14


@needs_media
def test_read_in_spans_it_is_the_same_signal():
    dry, echo = _speech_and_room()
    gains = fit_residue_gains(_Array(dry), _Array(dry + echo), RATE, TAPS, RIDGE)
    returned = ResidueReturned(_Array(dry), RATE, gains)
    whole = returned.read(0, len(dry))
    for piece in (RATE, 12345, 257):
        spans = np.concatenate([returned.read(a, min(a + piece, len(dry))) for a in range(0, len(dry), piece)])
        np.testing.assert_array_equal(spans, whole)
    # Reads past either end are zeros there (the residue is padded like the signal).
    assert not returned.read(-500, 0).any() and not returned.read(len(dry), len(dry) + 300).any()


@needs_media
def test_a_separator_limit_is_undone_before_the_fit_so_the_music_it_keeps_stays_where_it_is():
    """DeepFilterNet's attenuation limit keeps a share of the mix in its speech. Fitted to that
    speech, the residue would also take the music the limit kept (the speech now predicts it);
    fitted to the speech without the limit (`Unlimited`), it takes the echo only, and the limit's
    share of the mix stays in the speech as the separator gave it."""
    from voxhear.stages.audio.residue import Unlimited

    dry, echo = _speech_and_room()
    music = load_speech("../background/Kevin_MacLeod_-_Vibe_Ace.hq.ogg")[RATE * 5 : RATE * 5 + len(dry)]
    music = music * 10 ** (-10 / 20) * np.sqrt(np.mean(dry**2) / np.mean(music**2))
    mix = dry + echo + music
    limit = 10 ** (-12 / 20)
    limited = (1 - limit) * dry + limit * mix  # the separator's output with its limit
    unlimited = Unlimited(_Array(limited), _Array(mix), limit)
    np.testing.assert_allclose(unlimited.read(0, len(dry)), dry, atol=1e-5)
    gains = fit_residue_gains(unlimited, _Array(mix), RATE, TAPS, RIDGE)
    speech = ResidueReturned(unlimited, RATE, gains).read(0, len(dry)).astype(np.float64)
    # The speech is the limited speech plus the share of the echo the limit had left out ...
    expected = limited + (1 - limit) * echo
    assert _energy_db(speech - expected) < _energy_db(echo) - 6
    # ... and the background keeps (1 - limit) of the music, as the limit alone gives it.
    background = mix - speech
    assert _energy_db(background - (1 - limit) * music) < _energy_db(music) - 6
    # Fitted to the limited speech instead, more of the music would go to the speech.
    naive = ResidueReturned(_Array(limited), RATE, fit_residue_gains(_Array(limited), _Array(mix), RATE, TAPS, RIDGE))
    naive_background = mix - naive.read(0, len(dry)).astype(np.float64)
    assert _energy_db(naive_background - (1 - limit) * music) > _energy_db(background - (1 - limit) * music) + 1
