"""The baseline's one configuration object: model, data window, optimisation and seed.

Saved into every checkpoint (as a plain dict) and into the training folder as `config.yaml`;
`key=value` overrides on the command line are validated against the fields here.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass, field

import yaml

VARIANTS = ("mhgk", "local", "global")
LOSSES = ("l1", "mse")


class BaselineConfigError(ValueError):
    """An invalid baseline configuration (unknown key, wrong type, out-of-range value)."""


def _geometric(lo: float, hi: float, n: int) -> list[float]:
    if n == 1:
        return [lo]
    return [round(lo * (hi / lo) ** (i / (n - 1)), 4) for i in range(n)]


@dataclass
class BaselineConfig:
    """Everything that decides what the baseline trains and how.

    Attributes:
        variant: Bias of the audio cross-attention: `mhgk` (additive Gaussian kernel
            -d^2/(2 sigma_h^2), one width per head), `local` (hard |d| <= local_window mask) or
            `global` (plain attention).
        d_model: Width of the transformer.
        n_heads: Attention heads (self- and cross-attention alike).
        n_layers: Decoder blocks (self-attention, audio cross-attention, feed-forward).
        ff_mult: Feed-forward width as a multiple of d_model.
        dropout: Dropout in attention, feed-forward and the audio encoder.
        sigmas: mhgk: initial kernel width of each head in frames (narrow to wide); empty
            means a geometric series from 1 to 32 frames.
        learn_sigma: mhgk: learn each head's width (in log space) rather than keep it fixed.
        local_window: local: frames on either side of the aligned frame a query may see.
        n_mels: Log-mel bins per audio frame (one frame per video frame, 640 samples at 16 kHz).
        window_frames: Frames per training and evaluation window (25 fps).
        train_hop_frames: Hop between training windows; small hops give overlapping crops.
        batch_size: Windows per step.
        steps: Optimiser steps with audio.
        prior_steps: UniLS-style audio-free motion prior first: steps of masked motion
            reconstruction without audio before the audio steps (0 to skip).
        prior_mask_ratio: Share of frames masked per window during prior pretraining.
        lr: Peak learning rate (linear warm-up, cosine decay to a tenth).
        warmup_steps: Linear warm-up steps (each phase warms up again).
        weight_decay: AdamW weight decay.
        grad_clip: Gradient norm clip (0 to skip).
        loss: Per-frame loss on normalised motion, `l1` or `mse` (the velocity term uses the
            same). L1 fits the conditional median: mouth blendshapes rest near 0 most of the
            time and are scored by L1, and the median is what minimises it.
        velocity_weight: Weight of the frame-to-frame difference loss (keeps motion moving).
        aug_gain_db: Training augmentation: each stream of each window gets a random gain of up
            to +-this many dB (speakers and microphones differ in level).
        aug_warp: Training augmentation: each stream of each window has its mel axis stretched
            by a random factor in [1 - aug_warp, 1 + aug_warp] (vocal tract length perturbation:
            a new speaker's formants sit elsewhere). 0 skips.
        aug_freq_mask: Training augmentation: each stream of each window loses one random band
            of up to this many mel bins (SpecAugment-style; speakers differ in timbre). 0 skips.
        centre_clips: Train on each clip's motion with the clip's own mean replaced by the
            training mean: the model learns how a face moves, not which resting face goes with
            which training voice (a new person's resting face is not in the audio).
        calibrate: At each validation, fit one output gain per group (mouth, rest of the face,
            head pose) on the val split: the slope of true on predicted motion, in [0, 1]
            (`baseline/calibration.py`). Predictions are scaled by it; training is not affected.
            Off by default: it needs a val split with both talking and listening frames and
            right labels, which the demo's one val person does not have.
        eval_every: Steps between validation passes and checkpoints.
        seed: Seeds initialisation, batch sampling and dropout (each step is reseeded, so a
            resumed run repeats an uninterrupted one exactly).
    """

    variant: str = "mhgk"
    d_model: int = 128
    n_heads: int = 4
    n_layers: int = 3
    ff_mult: int = 2
    dropout: float = 0.1
    sigmas: list[float] = field(default_factory=list)
    learn_sigma: bool = True
    local_window: int = 3
    n_mels: int = 80
    window_frames: int = 50
    train_hop_frames: int = 5
    batch_size: int = 16
    steps: int = 1000
    prior_steps: int = 0
    prior_mask_ratio: float = 0.7
    lr: float = 1e-3
    warmup_steps: int = 100
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    loss: str = "l1"
    velocity_weight: float = 0.5
    aug_gain_db: float = 6.0
    aug_warp: float = 0.1
    aug_freq_mask: int = 16
    centre_clips: bool = True
    calibrate: bool = False
    eval_every: int = 250
    seed: int = 0

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise BaselineConfigError(f"variant must be one of {VARIANTS}, not {self.variant!r}")
        if self.loss not in LOSSES:
            raise BaselineConfigError(f"loss must be one of {LOSSES}, not {self.loss!r}")
        if self.d_model % self.n_heads:
            raise BaselineConfigError(f"d_model {self.d_model} is not divisible by n_heads {self.n_heads}")
        if not self.sigmas:
            self.sigmas = _geometric(1.0, 32.0, self.n_heads)
        self.sigmas = [float(s) for s in self.sigmas]
        if len(self.sigmas) != self.n_heads or any(not (s > 0 and math.isfinite(s)) for s in self.sigmas):
            raise BaselineConfigError(f"sigmas needs {self.n_heads} positive widths, got {self.sigmas}")
        positive = ("d_model", "n_heads", "n_layers", "ff_mult", "n_mels", "window_frames",
                    "train_hop_frames", "batch_size", "eval_every")
        for name in positive:
            if getattr(self, name) < 1:
                raise BaselineConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("steps", "prior_steps", "warmup_steps", "local_window", "aug_freq_mask", "aug_gain_db"):
            if getattr(self, name) < 0:
                raise BaselineConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0 or not 0.0 < self.prior_mask_ratio <= 1.0:
            raise BaselineConfigError("dropout must be in [0, 1) and prior_mask_ratio in (0, 1]")
        if not 0.0 <= self.aug_warp < 0.5:
            raise BaselineConfigError(f"aug_warp must be in [0, 0.5), got {self.aug_warp}")
        if self.lr <= 0:
            raise BaselineConfigError(f"lr must be > 0, got {self.lr}")

    @property
    def total_steps(self) -> int:
        return self.prior_steps + self.steps

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> BaselineConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = [k for k in values if k not in names]
        if unknown:
            hints = [f"{k!r}" + (f" (did you mean {m[0]!r}?)" if (m := difflib.get_close_matches(k, names, 1)) else "")
                     for k in unknown]
            raise BaselineConfigError(f"unknown baseline config key(s): {', '.join(hints)}")
        typed = {}
        for f in dataclasses.fields(cls):
            if f.name not in values:
                continue
            value = values[f.name]
            kind = type(f.default) if f.default is not dataclasses.MISSING else list
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                raise BaselineConfigError(f"{f.name} must be {kind.__name__}, got {value!r}")
            typed[f.name] = value
        return cls(**typed)

    def with_overrides(self, overrides: list[str]) -> BaselineConfig:
        """Apply `key=value` strings (values parsed as YAML: `sigmas=[1,4,16,64]`)."""
        values = self.to_dict()
        for item in overrides:
            key, sep, raw = item.partition("=")
            if not sep:
                raise BaselineConfigError(f"override {item!r} is not key=value")
            values[key.strip()] = yaml.safe_load(raw)
        if any(o.partition("=")[0].strip() == "n_heads" for o in overrides) and \
                not any(o.partition("=")[0].strip() == "sigmas" for o in overrides):
            values["sigmas"] = []  # re-derive the default widths for the new head count
        return BaselineConfig.from_dict(values)
