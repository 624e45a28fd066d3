"""The baseline's one configuration object: model, data window, optimisation and seed.

Saved into every checkpoint (as a plain dict) and into the training folder as `config.yaml`;
`key=value` overrides on the command line are validated against the fields here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from voxhear.pipeline.settings import ConfigError, apply_override, build_config, check_config, require, setting

VARIANTS = ("mhgk", "local", "global")
LOSSES = ("l1", "mse")


class BaselineConfigError(ConfigError):
    """An invalid baseline configuration (unknown key, wrong type, out-of-range value).

    A ConfigError (and so a ValueError) of the shared mechanism in voxhear.pipeline.settings.
    """


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

    variant: str = setting("mhgk", choices=VARIANTS)
    d_model: int = setting(128, ge=1)
    n_heads: int = setting(4, ge=1)
    n_layers: int = setting(3, ge=1)
    ff_mult: int = setting(2, ge=1)
    dropout: float = setting(0.1, ge=0, lt=1)
    # Every width must be > 0 (and finite); their count is checked against n_heads in check().
    sigmas: list[float] = setting(default_factory=list, gt=0)
    learn_sigma: bool = True
    local_window: int = setting(3, ge=0)
    n_mels: int = setting(80, ge=1)
    window_frames: int = setting(50, ge=1)
    train_hop_frames: int = setting(5, ge=1)
    batch_size: int = setting(16, ge=1)
    steps: int = setting(1000, ge=0)
    prior_steps: int = setting(0, ge=0)
    prior_mask_ratio: float = setting(0.7, gt=0, le=1)
    lr: float = setting(1e-3, gt=0)
    warmup_steps: int = setting(100, ge=0)
    weight_decay: float = setting(0.01, ge=0)
    grad_clip: float = setting(1.0, ge=0)
    loss: str = setting("l1", choices=LOSSES)
    velocity_weight: float = setting(0.5, ge=0)
    aug_gain_db: float = setting(6.0, ge=0)
    aug_warp: float = setting(0.1, ge=0, lt=0.5)
    aug_freq_mask: int = setting(16, ge=0)
    centre_clips: bool = True
    calibrate: bool = False
    eval_every: int = setting(250, ge=1)
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.sigmas and isinstance(self.n_heads, int):
            self.sigmas = _geometric(1.0, 32.0, self.n_heads)
        self.sigmas = [float(s) for s in self.sigmas]
        check_config(self, error=BaselineConfigError)

    def check(self) -> None:
        """The rules that tie fields together (field bounds are checked before this)."""
        require(self.d_model % self.n_heads == 0, "d_model",
                f"must be divisible by n_heads (got d_model={self.d_model}, n_heads={self.n_heads})",
                BaselineConfigError)
        require(len(self.sigmas) == self.n_heads, "sigmas",
                f"needs one width per head (n_heads={self.n_heads}), got {self.sigmas}", BaselineConfigError)

    @property
    def total_steps(self) -> int:
        return self.prior_steps + self.steps

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> BaselineConfig:
        """Build from plain data (a checkpoint's dict, a YAML file): strict keys and types, then checked.

        Unknown keys get a did-you-mean; values must have the field's type (an int is accepted
        for a float); every bound and cross-field rule is checked (by `__post_init__`).
        """
        return build_config(cls, values, error=BaselineConfigError)

    def with_overrides(self, overrides: list[str]) -> BaselineConfig:
        """Apply `key=value` strings (values parsed as YAML: `sigmas=[1,4,16,64]`)."""
        values = self.to_dict()
        keys = set()
        for item in overrides:
            apply_override(values, item, error=BaselineConfigError)
            keys.add(item.partition("=")[0].strip())
        if "n_heads" in keys and "sigmas" not in keys:
            values["sigmas"] = []  # re-derive the default widths for the new head count
        return BaselineConfig.from_dict(values)
