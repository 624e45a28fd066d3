"""Audio features at the video's frame rate: one log-mel vector per 25 fps frame.

A clip's audio has exactly T * 640 samples at 16 kHz; frame t spans samples [640 t, 640 (t+1)).
Dropping the first 320 samples before a centred STFT with hop 640 puts window t's centre at
sample 640 t + 320, the middle of video frame t, and yields exactly T vectors.
"""

from __future__ import annotations

import torch
import torchaudio

SAMPLE_RATE = 16000
FPS = 25
HOP = SAMPLE_RATE // FPS  # 640 samples per video frame
N_FFT = 1024  # 64 ms window: a little wider than a frame, as speech features usually are
LOG_FLOOR = 1e-5


class LogMel(torch.nn.Module):
    """(batch, T * 640) waveform at 16 kHz -> (batch, T, n_mels) natural-log mel energies."""

    def __init__(self, n_mels: int = 80) -> None:
        super().__init__()
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=SAMPLE_RATE, n_fft=N_FFT, hop_length=HOP, n_mels=n_mels,
            f_min=20.0, f_max=7600.0, center=True, pad_mode="constant", power=2.0)

    @torch.no_grad()
    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        if wave.dim() == 1:
            wave = wave[None]
        n_frames = wave.shape[-1] // HOP
        if wave.shape[-1] != n_frames * HOP or n_frames < 1:
            raise ValueError(f"audio of {wave.shape[-1]} samples is not a whole number of 640-sample frames")
        spec = self.mel(wave[..., HOP // 2:].float())  # (batch, n_mels, T)
        return torch.log(spec[..., :n_frames] + LOG_FLOOR).transpose(1, 2).contiguous()


def log_mel(wave: torch.Tensor, n_mels: int = 80) -> torch.Tensor:
    """Functional form of `LogMel` (builds the filterbank each call; use the module in loops)."""
    return LogMel(n_mels)(wave)
