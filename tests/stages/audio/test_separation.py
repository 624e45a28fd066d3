"""Separation: DeepFilterNet lag compensation, exact stems, the Demucs plumbing and its missing weights."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from tests.stages.audio.conftest import RATE, load_speech, needs_media, needs_store, write_wav16
from voxhear.stages.audio.config import SeparationConfig
from voxhear.pipeline.models import ModelStore, ModelStoreError
from voxhear.pipeline.records import SourceRecord
from voxhear.pipeline.stage import RunContext
from voxhear.stages.audio.separation import (DeepFilterNetBackend, DemucsBackend, estimate_speech, split_exact,
                                             store_with_audio_models)
from voxhear.stages.audio.stages import SeparationStage


def _si_sdr(estimate: np.ndarray, reference: np.ndarray) -> float:
    reference = reference - reference.mean()
    estimate = estimate - estimate.mean()
    target = estimate.dot(reference) / reference.dot(reference) * reference
    return float(10 * np.log10(target.dot(target) / np.sum((estimate - target) ** 2)))


@pytest.fixture(scope="module")
def deepfilternet(store):
    return DeepFilterNetBackend(store.resolve("deepfilternet3").file())


def _check_clean_speech_passes_aligned(backend) -> tuple[np.ndarray, np.ndarray]:
    """Clean speech comes out nearly unchanged, same length, aligned to the sample (one sample
    off is far worse); returns (speech, output) for further checks."""
    speech = load_speech("cmu_arctic_us_axb_a0005.wav")
    out = estimate_speech(backend, speech, RATE)
    assert out.shape == speech.shape
    aligned = _si_sdr(out, speech)
    assert aligned > 25.0
    assert aligned > _si_sdr(out[1:], speech[:-1]) + 10 and aligned > _si_sdr(out[:-1], speech[1:]) + 10
    return speech, out


@needs_store
@needs_media
def test_deepfilternet_output_is_aligned_with_its_input(deepfilternet):
    # libDF's output lags by 30 ms; estimate_speech must remove exactly that.
    speech, out = _check_clean_speech_passes_aligned(deepfilternet)
    # Without the compensation the output would trail by 1440 samples at 48 kHz (480 here).
    assert _si_sdr(out[480:], speech[:-480]) < 0.0


@needs_store
@needs_media
def test_deepfilternet_removes_noise(deepfilternet):
    speech = load_speech("cmu_arctic_us_aew_a0001.wav")
    noise = np.random.default_rng(0).standard_normal(len(speech)).astype(np.float32)
    noise *= np.sqrt(np.mean(speech ** 2) / np.mean(noise ** 2)) * 10 ** (-5 / 20)  # 5 dB SNR
    out = estimate_speech(deepfilternet, speech + noise, RATE)
    assert _si_sdr(out, speech) > _si_sdr(speech + noise, speech) + 8


def test_split_is_exact_for_any_estimate():
    rng = np.random.default_rng(0)
    mix = np.round(rng.uniform(-1, 1, 5000) * 32767) / 32768  # 16-bit grid, as audio16k.wav
    for speech in (0.5 * mix + 0.01 * rng.standard_normal(5000), 3.0 * rng.standard_normal(5000)):
        s, b = split_exact(mix, speech)
        assert np.array_equal(s.astype(np.int64) + b, np.round(mix * 2 ** 23).astype(np.int64))
        for stem in (s, b):  # both fit 24-bit FLAC
            assert -2 ** 23 <= stem.min() and stem.max() < 2 ** 23


def test_stems_written_without_a_background_file_hold_the_same_speech(tmp_path):
    """`write_exact_stems` with no background path (the separation stage's first pass, whose
    background is split again later) writes the speech stem alone, the same samples."""
    from voxhear.stages.audio.separation import FileSignal, write_exact_stems

    rng = np.random.default_rng(1)
    mix = FileSignal(write_wav16(tmp_path / "mix.wav", 0.3 * rng.uniform(-1, 1, 3 * RATE)))
    speech = FileSignal(write_wav16(tmp_path / "speech.wav", 0.2 * rng.uniform(-1, 1, 3 * RATE)))
    write_exact_stems(mix, speech, RATE, tmp_path / "s1.flac", tmp_path / "b1.flac", piece=RATE // 3)
    write_exact_stems(mix, speech, RATE, tmp_path / "s2.flac", None, piece=RATE // 3)
    assert sorted(p.name for p in tmp_path.glob("*.flac")) == ["b1.flac", "s1.flac", "s2.flac"]
    with_background, alone = (sf.read(tmp_path / name, dtype="int32")[0] for name in ("s1.flac", "s2.flac"))
    assert np.array_equal(with_background, alone)


def _row(tmp_path, audio: np.ndarray) -> SourceRecord:
    path = write_wav16(tmp_path / "in" / "audio16k.wav", audio)
    return SourceRecord(source_uri="x.mp4", source_id="src", audio_uri=str(path), duration_s=len(audio) / RATE)


def _check_stems(row: SourceRecord) -> None:
    mix, _ = sf.read(row.audio_uri, dtype="float64")
    speech, rate = sf.read(row.speech_uri, dtype="float64")
    background, _ = sf.read(row.background_uri, dtype="float64")
    assert rate == RATE and len(speech) == len(mix) == len(background)
    assert np.array_equal(speech + background, mix)  # exactly, after reading the files back
    assert np.array_equal(speech.astype(np.float32) + background.astype(np.float32), mix.astype(np.float32))


@needs_store
@needs_media
def test_separation_stage_writes_stems_that_add_up_to_the_mix(tmp_path, store):
    speech = load_speech("cmu_arctic_us_axb_a0004.wav")
    music = load_speech("../background/Kevin_MacLeod_-_Vibe_Ace.hq.ogg")[RATE * 5:RATE * 5 + len(speech)]
    context = RunContext(run_dir=tmp_path / "run", model_store=store)
    stage = SeparationStage(SeparationConfig(backend="deepfilternet"), context)
    assert stage.resources.gpus == 0  # DeepFilterNet's C runtime runs on CPUs only
    stage.setup()
    row = _row(tmp_path, 0.5 * speech + 0.1 * music)
    [out] = stage.process(row)
    _check_stems(out)
    assert out.separation_backend == "deepfilternet" and out.audio_rtf["separation"] > 0
    # The stems hold the separator's residue returned to the speech (separation.residue_taps); its
    # own speech is kept apart for diarization, and is what the stage writes with the residue off.
    returned, _ = sf.read(out.speech_uri, dtype="float64")
    separated, _ = sf.read(out.separated_uri, dtype="float64")
    assert out.separated_uri != out.speech_uri and not np.array_equal(returned, separated)
    off = SeparationStage(SeparationConfig(backend="deepfilternet", residue_taps=0), context)
    off.backend = stage.backend
    [plain] = off.process(_row(tmp_path, 0.5 * speech + 0.1 * music))
    _check_stems(plain)
    assert plain.separated_uri == plain.speech_uri
    np.testing.assert_array_equal(sf.read(plain.speech_uri, dtype="float64")[0], separated)


def _random_weight_htdemucs():
    import torch
    from demucs.htdemucs import HTDemucs

    torch.manual_seed(0)
    # A small HTDemucs with random weights: the real architecture, none of the trained weights.
    return HTDemucs(sources=["drums", "bass", "other", "vocals"], channels=16, depth=2, nfft=512, t_layers=1,
                    t_heads=1, bottom_channels=0, samplerate=44100, segment=2).eval()


def test_demucs_backend_plumbing_with_random_weight_htdemucs(tmp_path, store):
    import torch
    from demucs.apply import BagOfModels

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the stage runs it (separation.threads)
    try:
        _check_demucs_plumbing(tmp_path, store, BagOfModels([_random_weight_htdemucs()]))
    finally:
        torch.set_num_threads(threads)


def _check_demucs_plumbing(tmp_path, store, model) -> None:
    import torch
    from demucs.apply import apply_model

    backend = DemucsBackend(model, device="cpu", overlap=0.25)
    assert backend.sample_rate == 44100 and backend.vocals == 3
    rng = np.random.default_rng(0)
    audio = (0.1 * rng.standard_normal(int(5.3 * RATE))).astype(np.float32)  # longer than one 2 s chunk
    speech = estimate_speech(backend, audio, RATE)
    assert speech.shape == audio.shape and np.isfinite(speech).all() and np.abs(speech).max() > 0
    # The speech is the vocals source of the chunked, overlapped application at the model's rate.
    from voxhear.stages.audio.separation import resample

    x = torch.from_numpy(resample(audio, RATE, 44100))[None].expand(2, -1)
    mean, std = x.mean(0).mean(), x.mean(0).std()
    with torch.inference_mode():
        vocals = apply_model(model, ((x - mean) / std)[None], shifts=0, split=True, overlap=0.25, progress=False)[0][3]
    expected = resample(((vocals * std + mean).mean(0)).numpy(), 44100, RATE)[:len(audio)]
    np.testing.assert_allclose(speech, expected, atol=1e-5)

    # Through the stage: stems add up to the mix whatever the model.
    context = RunContext(run_dir=tmp_path / "run", model_store=store)
    stage = SeparationStage(SeparationConfig(backend="demucs", gpus=0.5), context)
    assert stage.resources.gpus == 0.5  # declared for clusters
    stage.backend = backend
    [out] = stage.process(_row(tmp_path, audio))
    _check_stems(out)
    assert out.separation_backend == "demucs"


def test_missing_demucs_weights_fail_with_a_clear_message(tmp_path, monkeypatch):
    monkeypatch.delenv("VOXHEAR_MODEL_DIR", raising=False)
    empty = ModelStore(store_dir=str(tmp_path / "store"), cache_dir=tmp_path / "cache", allow_download=False)
    assert "htdemucs" in store_with_audio_models(empty).registry
    with pytest.raises(ModelStoreError) as error:
        DemucsBackend.from_store(empty, "htdemucs")
    message = str(error.value)
    assert "htdemucs/955717e8-8726e21a.th" in message and "VOXHEAR_MODEL_DIR" in message
    assert "separation.backend=deepfilternet" in message
    # The stage fails in setup with the same (fatal) error, before any row is touched.
    stage = SeparationStage(SeparationConfig(backend="demucs"), RunContext(run_dir=tmp_path / "run", model_store=empty))
    with pytest.raises(ModelStoreError):
        stage.setup()
