"""Compare the two DeepFilterNet3 runtimes on real speech under real backgrounds.

    HF_HUB_OFFLINE=1 VOXHEAR_MODEL_DIR=../shared/models python -m voxhear.benchmarks.separation_bench

Builds 30 s of speech at 48 kHz from ../shared/media/speech (two LibriSpeech utterances and
jfk.flac, resampled), mixes it with each background of ../shared/media/background at 0, 5 and
10 dB SNR, and runs `deepfilternet` (libDF's C runtime, frame by frame) and `deepfilternet_onnx`
(onnxruntime over many frames per call) on every mix. Prints per mix the SI-SDR of the ONNX output
against the libDF output (agreement), the speech SI-SDR of each against the clean speech, and the
lag of each against the clean speech (the shift that maximises their cross-correlation, in
samples); then the CPU seconds per audio second of each runtime on the first mix, one thread, best
of `--repeats` runs after a warm-up.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from voxhear.benchmarks.synth.options import default_media_dir
from voxhear.pipeline.models import ModelStore
from voxhear.stages.audio.deepfilternet_onnx import DeepFilterNetOnnxBackend
from voxhear.stages.audio.separation import DeepFilterNetBackend, read_mono, resample

RATE = 48000
SPEECH = ["2412-153948-0000.flac", "198-209-0000.hq.ogg", "jfk.flac"]
BACKGROUNDS = {"music": "Kevin_MacLeod_-_Vibe_Ace.hq.ogg", "kitchen": "doing_the_dishes.wav",
               "strings": "Hungarian_Dance_number_5_-_Allegro_in_F_sharp_minor_(string_orchestra).hq.ogg",
               "whale": "glacier-bay-humpback.hq.ogg"}
SNRS_DB = (0, 5, 10)


def si_sdr(estimate: np.ndarray, reference: np.ndarray) -> float:
    estimate = estimate.astype(np.float64) - estimate.mean()
    reference = reference.astype(np.float64) - reference.mean()
    target = estimate.dot(reference) / reference.dot(reference) * reference
    return float(10 * np.log10(target.dot(target) / np.sum((estimate - target) ** 2)))


def lag(estimate: np.ndarray, reference: np.ndarray, reach: int = 2400) -> int:
    """Samples by which `estimate` trails `reference` (peak of their cross-correlation within `reach`)."""
    n = len(reference) + len(estimate)
    size = 1 << (n - 1).bit_length()
    corr = np.fft.irfft(np.fft.rfft(estimate, size) * np.conj(np.fft.rfft(reference, size)), size)
    shifts = np.concatenate([np.arange(0, reach + 1), np.arange(-reach, 0)])
    values = np.concatenate([corr[:reach + 1], corr[-reach:]])
    return int(shifts[np.argmax(values)])


def load(path: Path) -> np.ndarray:
    audio, rate = read_mono(path)
    return resample(audio, rate, RATE)


def mixture(speech: np.ndarray, background: np.ndarray, snr_db: float) -> np.ndarray:
    background = np.resize(background, len(speech))
    gain = np.sqrt(np.mean(speech ** 2) / np.mean(background ** 2)) * 10 ** (-snr_db / 20)
    return (speech + gain * background).astype(np.float32)


def cpu_per_second(backend, audio: np.ndarray, repeats: int) -> float:
    backend.speech(audio[:RATE])  # first-call costs (allocations, onnxruntime's plans) outside the clock
    best = float("inf")
    for _ in range(repeats):
        started = time.process_time()
        backend.speech(audio)
        best = min(best, time.process_time() - started)
    return best / (len(audio) / RATE)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--media", type=Path, default=default_media_dir())
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    model = ModelStore().resolve("deepfilternet3").file()
    libdf = DeepFilterNetBackend(model)
    onnx = DeepFilterNetOnnxBackend(model, threads=1)
    speech = np.concatenate([load(args.media / "speech" / name) for name in SPEECH])[:int(args.seconds * RATE)]
    print(f"speech: {len(speech) / RATE:.1f} s at {RATE} Hz from {', '.join(SPEECH)}")
    print("| background | SNR dB | agreement dB | libDF speech SI-SDR | ONNX speech SI-SDR | lag libDF | lag ONNX |")
    print("|---|---|---|---|---|---|---|")
    agreements, first = [], None
    for label, name in BACKGROUNDS.items():
        background = load(args.media / "background" / name)
        for snr in SNRS_DB:
            mix = mixture(speech, background, snr)
            first = mix if first is None else first
            old, new = libdf.speech(mix), onnx.speech(mix)
            agreements.append(si_sdr(new, old))
            print(f"| {label} | {snr} | {agreements[-1]:.1f} | {si_sdr(old, speech):.2f} | {si_sdr(new, speech):.2f} "
                  f"| {lag(old, speech)} | {lag(new, speech)} |", flush=True)
    print(f"agreement: min {min(agreements):.1f} dB, mean {np.mean(agreements):.1f} dB over {len(agreements)} mixes")
    old_rtf, new_rtf = cpu_per_second(libdf, first, args.repeats), cpu_per_second(onnx, first, args.repeats)
    print(f"CPU s per audio s, one thread, {len(first) / RATE:.0f} s input: deepfilternet {old_rtf:.4f}, "
          f"deepfilternet_onnx {new_rtf:.4f} ({old_rtf / new_rtf:.1f}x); load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
