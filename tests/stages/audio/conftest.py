"""Shared fixtures of the audio stage tests: the model store and real speech from shared/media."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.conftest import SHARED_MODELS, needs_shared
from voxhear.pipeline.models import ModelStore

MEDIA = SHARED_MODELS.parent / "media"
SPEECH = MEDIA / "speech"
RATE = 16000

needs_store = needs_shared(SHARED_MODELS / "MODELS.tsv", "the shared model store")
needs_media = needs_shared(SPEECH, "the shared speech recordings")


@pytest.fixture(scope="session")
def store() -> ModelStore:
    return ModelStore(store_dir=str(SHARED_MODELS), allow_download=False)


def load_speech(name: str, rate: int = RATE) -> np.ndarray:
    """A shared recording as mono float32 at `rate`."""
    from voxhear.stages.audio.separation import read_mono, resample

    audio, source_rate = read_mono(SPEECH / name)
    return resample(audio, source_rate, rate)


def arctic(speaker: str) -> list[Path]:
    return sorted(SPEECH.glob(f"cmu_arctic_us_{speaker}_*.wav"))


def write_wav16(path: Path, audio: np.ndarray, rate: int = RATE) -> Path:
    """16-bit PCM WAV, as ingest writes `audio16k.wav`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.clip(audio, -1, 1), rate, subtype="PCM_16")
    return path
