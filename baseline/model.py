"""The baseline: a small temporal transformer from two speech streams to face motion.

One motion query per video frame. Each block lets the queries attend to each other
(self-attention over the window), then to the audio of both parties at once (cross-attention
over the concatenated self and other log-mel sequences, told apart by a learned stream
embedding), then applies a feed-forward layer. The ablation is in the cross-attention logits:

- `mhgk` adds -d^2 / (2 sigma_h^2) for query frame i and audio frame j, d = i - j, with one
  width sigma_h per head, initialised narrow to wide (multi-head Gaussian kernel, Beyond
  Monologue, arXiv 2604.10367): narrow heads can lip-sync to one's own speech, wide heads can
  react to the other party's turns.
- `local` masks every |d| > local_window (a strict frame-aligned window).
- `global` adds nothing (plain attention; positions only through the sinusoidal encoding).

Targets are normalised per dimension with training-split statistics held in buffers, so a
checkpoint is self-contained. With `motion` given (UniLS-style prior pretraining) the queries
carry the visible frames of the motion itself and masked frames carry a learned mask token;
the audio-driven model sees mask tokens only.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from voxhear.baseline.config import BaselineConfig

N_BLENDSHAPES = 52
N_POSE = 6
MOTION_DIM = N_BLENDSHAPES + N_POSE


def sinusoids(n: int, dim: int, device: torch.device | None = None) -> torch.Tensor:
    """(n, dim) sinusoidal position encoding."""
    pos = torch.arange(n, device=device, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    enc = torch.zeros(n, dim, device=device)
    enc[:, 0::2] = torch.sin(pos * freq)
    enc[:, 1::2] = torch.cos(pos * freq)
    return enc


def temporal_bias(variant: str, query_pos: torch.Tensor, key_pos: torch.Tensor, sigma: torch.Tensor | None,
                  local_window: int) -> torch.Tensor | None:
    """Additive attention bias from frame distances, (heads or 1, n_query, n_key), or None.

    Args:
        variant: `mhgk`, `local` or `global`.
        query_pos: (n_query,) frame index of each query.
        key_pos: (n_key,) frame index of each key.
        sigma: (heads,) kernel widths in frames (mhgk only).
        local_window: Largest |query - key| a `local` query may see.
    """
    d = (query_pos[:, None] - key_pos[None, :]).float()
    if variant == "mhgk":
        return -(d * d)[None] / (2.0 * sigma[:, None, None] ** 2)
    if variant == "local":
        blocked = torch.zeros_like(d).masked_fill(d.abs() > local_window, float("-inf"))
        return blocked[None]
    return None


class Attention(nn.Module):
    """Multi-head attention with an optional additive bias on the logits (written out, so the
    bias is plain to see and the weights can be inspected)."""

    def __init__(self, d_model: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.q = nn.Linear(d_model, d_model)
        self.kv = nn.Linear(d_model, 2 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.dropout = nn.Dropout(dropout)
        self.last_weights: torch.Tensor | None = None
        self.keep_weights = False

    def forward(self, x: torch.Tensor, memory: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        batch, n_q, width = x.shape
        dh = width // self.n_heads
        q = self.q(x).view(batch, n_q, self.n_heads, dh).transpose(1, 2)
        k, v = self.kv(memory).view(batch, memory.shape[1], 2, self.n_heads, dh).permute(2, 0, 3, 1, 4)
        logits = q @ k.transpose(-1, -2) / math.sqrt(dh)  # (batch, heads, n_q, n_k)
        if bias is not None:
            logits = logits + bias
        weights = logits.softmax(dim=-1)
        if self.keep_weights:
            self.last_weights = weights.detach()
        y = (self.dropout(weights) @ v).transpose(1, 2).reshape(batch, n_q, width)
        return self.out(y)


class Block(nn.Module):
    def __init__(self, cfg: BaselineConfig) -> None:
        super().__init__()
        d = cfg.d_model
        self.variant, self.local_window = cfg.variant, cfg.local_window
        self.norm_self, self.norm_cross, self.norm_ff = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.self_attn = Attention(d, cfg.n_heads, cfg.dropout)
        self.cross_attn = Attention(d, cfg.n_heads, cfg.dropout)
        self.ff = nn.Sequential(nn.Linear(d, cfg.ff_mult * d), nn.GELU(), nn.Linear(cfg.ff_mult * d, d))
        self.dropout = nn.Dropout(cfg.dropout)
        log_sigma = torch.log(torch.tensor(cfg.sigmas, dtype=torch.float32))
        if cfg.learn_sigma:
            self.log_sigma = nn.Parameter(log_sigma)
        else:
            self.register_buffer("log_sigma", log_sigma)

    @property
    def sigma(self) -> torch.Tensor:
        return self.log_sigma.exp()

    def forward(self, x: torch.Tensor, audio: torch.Tensor | None, audio_pos: torch.Tensor | None) -> torch.Tensor:
        h = self.norm_self(x)
        x = x + self.dropout(self.self_attn(h, h))
        if audio is not None:
            query_pos = torch.arange(x.shape[1], device=x.device)
            bias = temporal_bias(self.variant, query_pos, audio_pos, self.sigma, self.local_window)
            x = x + self.dropout(self.cross_attn(self.norm_cross(x), audio, bias))
        return x + self.dropout(self.ff(self.norm_ff(x)))


class AudioEncoder(nn.Module):
    """Normalised log-mel frames -> d_model, with two small convolutions for +-2 frames of context."""

    def __init__(self, cfg: BaselineConfig) -> None:
        super().__init__()
        d = cfg.d_model
        self.proj = nn.Linear(cfg.n_mels, d)
        self.conv1 = nn.Conv1d(d, d, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(d, d, kernel_size=3, padding=1)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        h = self.proj(mel).transpose(1, 2)
        h = h + self.conv2(F.gelu(self.conv1(F.gelu(h))))
        return self.dropout(h.transpose(1, 2))


class TalkListenModel(nn.Module):
    """Self and other speech (log-mel, T frames each) -> T frames of 52 blendshapes + 6 pose."""

    def __init__(self, cfg: BaselineConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.audio = AudioEncoder(cfg)
        self.stream = nn.Parameter(torch.randn(2, d) * 0.02)  # 0: self, 1: other
        self.motion_in = nn.Linear(MOTION_DIM, d)
        self.mask_token = nn.Parameter(torch.randn(d) * 0.02)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, MOTION_DIM)
        # A zero head starts every prediction at the training mean (0 once normalised).
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        for name, size in (("audio_mean", cfg.n_mels), ("motion_mean", MOTION_DIM)):
            self.register_buffer(name, torch.zeros(size))
        for name, size in (("audio_std", cfg.n_mels), ("motion_std", MOTION_DIM)):
            self.register_buffer(name, torch.ones(size))
        # How much of the predicted motion is kept, per output (fitted on val; see calibration.py).
        self.register_buffer("motion_gain", torch.ones(MOTION_DIM))

    def set_normalisation(self, norm: dict[str, torch.Tensor]) -> None:
        """Copy training-split statistics (`audio_mean/std`, `motion_mean/std`) into the buffers."""
        for name in ("audio_mean", "audio_std", "motion_mean", "motion_std"):
            getattr(self, name).copy_(torch.as_tensor(norm[name], dtype=torch.float32))

    def normalisation(self) -> dict[str, torch.Tensor]:
        return {n: getattr(self, n).detach().cpu().clone()
                for n in ("audio_mean", "audio_std", "motion_mean", "motion_std")}

    def normalise_motion(self, motion: torch.Tensor) -> torch.Tensor:
        return (motion - self.motion_mean) / self.motion_std

    def denormalise_motion(self, motion: torch.Tensor) -> torch.Tensor:
        """Shard units from the network's normalised output, with the calibrated gains applied."""
        return motion * self.motion_gain * self.motion_std + self.motion_mean

    def forward(self, self_mel: torch.Tensor | None, other_mel: torch.Tensor | None,
                motion: torch.Tensor | None = None, motion_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Predict normalised motion.

        Args:
            self_mel: (batch, T, n_mels) log-mel of the on-screen person's speech, or None for
                the audio-free prior.
            other_mel: (batch, T, n_mels) log-mel of everyone else's speech, or None.
            motion: (batch, T, 58) normalised motion the queries may see (prior pretraining).
            motion_mask: (batch, T) True where a frame of `motion` is hidden.

        Returns:
            (batch, T, 58) normalised blendshapes then pose.
        """
        ref = self_mel if self_mel is not None else motion
        batch, n = ref.shape[:2]
        pos = sinusoids(n, self.cfg.d_model, ref.device)
        x = self.mask_token.expand(batch, n, -1)
        if motion is not None:
            hidden = torch.zeros_like(motion[..., 0], dtype=torch.bool) if motion_mask is None else motion_mask
            x = torch.where(hidden[..., None], x, self.motion_in(motion))
        x = x + pos
        audio = audio_pos = None
        if self_mel is not None:
            streams = [(self_mel - self.audio_mean) / self.audio_std, (other_mel - self.audio_mean) / self.audio_std]
            audio = torch.cat([self.audio(m) + self.stream[i] + pos for i, m in enumerate(streams)], dim=1)
            audio_pos = torch.arange(n, device=ref.device).repeat(2)
        for block in self.blocks:
            x = block(x, audio, audio_pos)
        return self.head(self.norm(x))

    def sigmas(self) -> list[list[float]]:
        """Current kernel width per block and head, in frames."""
        return [[round(s, 3) for s in b.sigma.tolist()] for b in self.blocks]
