"""The speech the separator left in the background, predicted from the speech and returned to it.

DeepFilterNet takes the room out of a voice as well as the noise: the reverberant tail and the
smear it removes land in the background track, shaped like the speech they came from (the leak
that `separation_leakage` rejects clean, quiet single speakers for). What of the background is a
linear function of the recent speech is that residue, not the recording's noise or music, which
the speech does not predict. So, per frequency bin, the background's STFT is fitted by least
squares (with a small ridge) to the speech's STFT over the current and `taps - 1` earlier frames,
and the fitted part is moved from the background to the speech. Fitted once per source from
normal equations summed a chunk of frames at a time, then applied a span at a time: memory does
not grow with the input. `speech + background == mix` still holds exactly (the stems are split
from the new speech). Measured in the README ("Real people") and docs/design/real-people-labels.md.
"""

from __future__ import annotations

import numpy as np

from voxhear.stages.audio.separation import Signal

# STFT of 32 ms frames every 16 ms (512 / 256 samples at 16 kHz).
FRAME_S = 0.032
# Frames summed into the normal equations per step (bounds the lagged-frame array's memory).
CHUNK_FRAMES = 256


class _Stft:
    """Frames of a signal at one rate: frame t covers samples [t * hop, t * hop + size), weighted by
    a square-root periodic Hann window, whose squares at half overlap sum to one (so the inverse is
    a plain overlap-add of the windowed inverse transforms)."""

    def __init__(self, rate: int) -> None:
        self.size = max(2, 2 * round(FRAME_S * rate / 2))
        self.hop = self.size // 2
        self.window = np.sqrt(np.hanning(self.size + 1)[:-1]).astype(np.float64)

    def frames(self, signal: Signal, first: int, stop: int) -> np.ndarray:
        """Spectra of frames [first, stop) of `signal` (zeros outside it), shape (frames, bins)."""
        count = stop - first
        if count <= 0:
            return np.zeros((0, self.size // 2 + 1), np.complex128)
        samples = signal.read(first * self.hop, (stop - 1) * self.hop + self.size).astype(np.float64)
        index = np.arange(count)[:, None] * self.hop + np.arange(self.size)[None, :]
        return np.fft.rfft(samples[index] * self.window, axis=1)

    def span(self, length: int) -> tuple[int, int]:
        """The frames [first, stop) that touch samples [0, length)."""
        return -1, -(-length // self.hop)


def _lagged(spectra: np.ndarray, taps: int) -> np.ndarray:
    """(frames - taps + 1, taps, bins): row t holds frames t + taps - 1, t + taps - 2, ..., t."""
    count = spectra.shape[0] - taps + 1
    return np.stack([spectra[taps - 1 - k : taps - 1 - k + count] for k in range(taps)], axis=1)


class Unlimited:
    """A separator's speech before its attenuation limit: DeepFilterNet's limit mixes `limit` of
    the input back into its output (limited = (1 - limit) * speech + limit * mix), which is undone
    exactly, so that the residue is fitted to what the separator itself took out and the mix the
    limit keeps is not read as residue (it would take the recording's background into the speech)."""

    def __init__(self, limited: Signal, mix: Signal, limit: float) -> None:
        self.limited, self.mix, self.limit, self.length = limited, mix, limit, limited.length

    def read(self, start: int, stop: int) -> np.ndarray:
        limited = self.limited.read(start, stop).astype(np.float64)
        if not self.limit:
            return limited.astype(np.float32)
        speech = (limited - self.limit * self.mix.read(start, stop)) / (1 - self.limit)
        return speech.astype(np.float32)


def fit_residue_gains(speech: Signal, mix: Signal, rate: int, taps: int, ridge: float) -> np.ndarray:
    """Per bin, the `taps` complex gains (bins, taps) that best predict the background's STFT (mix
    minus speech) from the speech's current and earlier frames, by ridge-regularized least squares
    (ridge: a share of the mean diagonal of the normal equations)."""
    stft = _Stft(rate)
    bins = stft.size // 2 + 1
    gram = np.zeros((bins, taps, taps), np.complex128)
    cross = np.zeros((bins, taps), np.complex128)
    first, stop = stft.span(mix.length)
    for start in range(first, stop, CHUNK_FRAMES):
        end = min(stop, start + CHUNK_FRAMES)
        # taps - 1 frames of history before the chunk (zeros before the signal).
        speech_frames = stft.frames(speech, start - taps + 1, end)
        background = stft.frames(mix, start, end) - speech_frames[taps - 1 :]
        lagged = _lagged(speech_frames, taps)
        gram += np.einsum("tkf,tjf->fkj", lagged.conj(), lagged)
        cross += np.einsum("tkf,tf->fk", lagged.conj(), background)
    load = np.einsum("fkk->f", gram).real / taps
    regularized = gram + (ridge * load + 1e-12)[:, None, None] * np.eye(taps)
    return np.linalg.solve(regularized, cross[..., None])[..., 0]


class ResidueReturned:
    """`speech` plus the background's part that `gains` predict from it, read in spans; with an
    `Unlimited` speech, its limited speech plus the residue's share that the limit left in the
    background (1 - limit of it)."""

    def __init__(self, speech: Signal, rate: int, gains: np.ndarray) -> None:
        self.speech, self.gains, self.length = speech, gains, speech.length
        self.taps = gains.shape[1]
        self._stft = _Stft(rate)

    def read(self, start: int, stop: int) -> np.ndarray:
        stft, taps = self._stft, self.taps
        hop, size = stft.hop, stft.size
        first = -(-(start - size + 1) // hop)  # the first frame reaching sample `start`
        last = -(-stop // hop)  # frames [first, last) reach [start, stop)
        spectra = stft.frames(self.speech, first - taps + 1, last)
        predicted = np.einsum("tkf,fk->tf", _lagged(spectra, taps), self.gains)
        pieces = np.fft.irfft(predicted, n=size, axis=1) * stft.window
        residue = np.zeros((last - first - 1) * hop + size)
        for i, piece in enumerate(pieces):
            residue[i * hop : i * hop + size] += piece
        offset = start - first * hop
        residue = residue[offset : offset + stop - start]
        if isinstance(self.speech, Unlimited):
            out = self.speech.limited.read(start, stop).astype(np.float64) + (1 - self.speech.limit) * residue
        else:
            out = self.speech.read(start, stop).astype(np.float64) + residue
        # Zeros outside the signal, like every Signal (the echo of its last frames runs past its end).
        out[: max(0, min(stop, 0) - start)] = 0
        out[max(0, self.length - start) :] = 0
        return out.astype(np.float32)
