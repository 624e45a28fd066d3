"""Train the baseline on the shards' train split; validate on the val split; resume from `last.pt`.

A checkpoint holds the model, the optimizer, the step, the config and the normalisation
statistics. Every step reseeds the batch draw and dropout from (seed, step) and the learning
rate is a function of the step, so a resumed run continues exactly as an uninterrupted one would.

    out/config.yaml   the resolved config
    out/last.pt       the latest checkpoint (resumed from)
    out/best.pt       the checkpoint with the lowest val loss (last.pt's twin without a val split)
    out/log.jsonl     one line per validation: step, train and val loss, elapsed seconds
"""

from __future__ import annotations

import json
import logging
import math
import pickle
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from tqdm import tqdm

from voxhear.baseline.calibration import fit_gains, gain_vector, gains_by_group, group_of_outputs
from voxhear.baseline.config import BaselineConfig
from voxhear.baseline.data import WindowBank, expand_shards, flatten_frames, load_windows, with_clip_means_replaced
from voxhear.baseline.model import MOTION_DIM, TalkListenModel
from voxhear.pipeline.io import atomic_path, atomic_write_text

log = logging.getLogger(__name__)

CHECKPOINT_VERSION = 2  # 2: the model holds calibrated output gains (`motion_gain`)
STD_FLOOR = 1e-2  # blendshapes that barely move would otherwise blow up once normalised


def pick_device(device: str | None = None) -> torch.device:
    return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))


def compute_normalisation(bank: WindowBank) -> dict[str, torch.Tensor]:
    """Per-dimension mean/std of motion over valid frames and of log-mel over both streams."""
    motion = bank.motion[bank.valid]
    if len(motion) < 2:
        raise ValueError("the train split has fewer than two frames with a face mesh")
    audio = torch.cat([bank.self_mel.flatten(0, 1), bank.other_mel.flatten(0, 1)])
    return {"motion_mean": motion.mean(0), "motion_std": motion.std(0).clamp_min(STD_FLOOR),
            "audio_mean": audio.mean(0), "audio_std": audio.std(0).clamp_min(STD_FLOOR)}


def lr_at(step: int, cfg: BaselineConfig) -> float:
    """Linear warm-up then cosine decay to a tenth, separately for the prior and the audio phase."""
    if step < cfg.prior_steps:
        i, n = step, cfg.prior_steps
    else:
        i, n = step - cfg.prior_steps, max(cfg.steps, 1)
    if i < cfg.warmup_steps:
        return cfg.lr * (i + 1) / cfg.warmup_steps
    progress = (i - cfg.warmup_steps) / max(n - cfg.warmup_steps, 1)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0))))


def motion_loss(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, velocity_weight: float,
                kind: str = "mse") -> torch.Tensor:
    """Masked error (`l1` or `mse`) on normalised motion plus the same of frame-to-frame differences."""
    error = torch.abs if kind == "l1" else torch.square
    w = valid.float()[..., None]
    loss = (error(pred - target) * w).sum() / (w.sum() * pred.shape[-1]).clamp_min(1.0)
    if velocity_weight:
        wv = w[:, 1:] * w[:, :-1]
        dv = (pred[:, 1:] - pred[:, :-1]) - (target[:, 1:] - target[:, :-1])
        loss = loss + velocity_weight * (error(dv) * wv).sum() / (wv.sum() * pred.shape[-1]).clamp_min(1.0)
    return loss


def augment(mel: torch.Tensor, cfg: BaselineConfig, gen: torch.Generator) -> torch.Tensor:
    """Random gain, mel-axis warp and one masked mel band per window (log-mel in, log-mel out)."""
    batch, _, n_mels = mel.shape
    if cfg.aug_warp:
        factor = 1.0 + (torch.rand(batch, 1, 1, generator=gen) * 2 - 1) * cfg.aug_warp
        src = (torch.arange(n_mels).view(1, 1, n_mels) * factor).clamp(max=n_mels - 1).to(mel.device)
        lo = src.floor().long()
        hi, w = (lo + 1).clamp(max=n_mels - 1), src - lo
        lo, hi = lo.expand(-1, mel.shape[1], -1), hi.expand(-1, mel.shape[1], -1)
        mel = mel.gather(2, lo) * (1 - w) + mel.gather(2, hi) * w
    if cfg.aug_gain_db:
        gain_db = (torch.rand(batch, 1, 1, generator=gen) * 2 - 1) * cfg.aug_gain_db
        mel = mel + (gain_db * math.log(10) / 10).to(mel.device)  # power spectrum: 10 log10 -> ln
    if cfg.aug_freq_mask:
        width = torch.randint(0, cfg.aug_freq_mask + 1, (batch, 1, 1), generator=gen)
        start = (torch.rand(batch, 1, 1, generator=gen) * (n_mels - width + 1)).long()
        bins = torch.arange(n_mels).view(1, 1, n_mels)
        band = ((bins >= start) & (bins < start + width)).to(mel.device)
        # The band takes the window's own mean level, so it carries no information.
        mel = torch.where(band, mel.mean(dim=(1, 2), keepdim=True), mel)
    return mel


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _step_seed(cfg: BaselineConfig, step: int) -> int:
    return (cfg.seed * 1_000_003 + step) % (2 ** 63)


def training_step(model: TalkListenModel, bank: WindowBank, cfg: BaselineConfig, step: int) -> torch.Tensor:
    """Loss of one seeded batch: masked-motion prior before `prior_steps`, audio to motion after."""
    gen = torch.Generator().manual_seed(_step_seed(cfg, step))
    idx = torch.randint(len(bank), (cfg.batch_size,), generator=gen)
    torch.manual_seed(_step_seed(cfg, step))  # dropout
    target = model.normalise_motion(bank.motion[idx])
    valid = bank.valid[idx]
    if step < cfg.prior_steps:
        hidden = (torch.rand(valid.shape, generator=gen) < cfg.prior_mask_ratio).to(valid.device) | ~valid
        pred = model(None, None, motion=target * valid[..., None], motion_mask=hidden)
        return motion_loss(pred, target, valid & hidden, cfg.velocity_weight, cfg.loss)
    pred = model(augment(bank.self_mel[idx], cfg, gen), augment(bank.other_mel[idx], cfg, gen))
    return motion_loss(pred, target, valid, cfg.velocity_weight, cfg.loss)


@torch.no_grad()
def validate(model: TalkListenModel, bank: WindowBank, cfg: BaselineConfig, batch: int = 64) -> tuple[float, dict]:
    """Val loss (of the uncalibrated output, so it tracks training alone) and, with
    `cfg.calibrate`, the output gains fitted on these windows (also set on the model)."""
    model.eval()
    pred = torch.cat([model(bank.self_mel[i:i + batch], bank.other_mel[i:i + batch])
                      for i in range(0, len(bank), batch)])
    target = model.normalise_motion(bank.motion)
    loss = float(motion_loss(pred, target, bank.valid, 0.0, cfg.loss))
    gains: dict = {}
    if cfg.calibrate:
        groups = group_of_outputs(bank.blendshape_names)
        gains = fit_gains(flatten_frames(pred), flatten_frames(target),
                          flatten_frames(bank.valid), bank.frame_clips(), groups)
        model.motion_gain.copy_(gain_vector(gains, groups))
    model.train()
    return loss, gains


def save_checkpoint(path: Path, model: TalkListenModel, optimizer: torch.optim.Optimizer, step: int,
                    cfg: BaselineConfig, extra: dict) -> None:
    state = {"version": CHECKPOINT_VERSION, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
             "step": step, "config": cfg.to_dict(), "norm": model.normalisation(), **extra}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


class CheckpointError(ValueError):
    """A checkpoint that cannot be read as plain data (tensors, numbers, strings, lists, dicts)."""


def read_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> dict:
    """The checkpoint dict at `path`, read with `weights_only=True`.

    A checkpoint holds only tensors and plain data (the config as a dict), so nothing in it needs
    pickle's ability to build arbitrary objects, which would run code from a file someone handed us.
    """
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f"{path} holds objects other than tensors and plain data, which are not loaded (they could run "
            f"code); a checkpoint of `voxhear baseline train` has none: {str(error).splitlines()[0]}"
        ) from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or "config" not in ckpt:
        raise CheckpointError(f"{path} is not a checkpoint of `voxhear baseline train` (no model and config)")
    return ckpt


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[TalkListenModel, dict]:
    """The model of a checkpoint (eval mode) and the checkpoint dict."""
    ckpt = read_checkpoint(path, device)
    model = TalkListenModel(BaselineConfig.from_dict(ckpt["config"])).to(device)
    state = dict(ckpt["model"])
    state.setdefault("motion_gain", torch.ones(MOTION_DIM))  # version 1 checkpoints: no calibration
    model.load_state_dict(state)
    model.eval()
    return model, ckpt


def _make_optimizer(model: TalkListenModel, cfg: BaselineConfig) -> torch.optim.Optimizer:
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    rest = [p for n, p in model.named_parameters() if p.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                              {"params": rest, "weight_decay": 0.0}], lr=cfg.lr)


def train(cfg: BaselineConfig, shards: str | list[str], out_dir: str | Path, device: str | None = None,
          stop_at: int | None = None, progress: bool = True) -> dict:
    """Train (or resume) into `out_dir`.

    Args:
        cfg: The configuration; a resumed run must have been started with the same one.
        shards: Shard globs or paths.
        out_dir: Where checkpoints, the config and the log go.
        device: `cpu`, `cuda`, ...; default CUDA when present.
        stop_at: Stop after this global step (a time budget, or a test of resumption).
        progress: Show a tqdm bar.

    Returns:
        Summary: steps done, best and last val loss, windows per split, wall seconds.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dev = pick_device(device)
    started = time.perf_counter()
    urls = expand_shards(shards)
    last_path, best_path = out / "last.pt", out / "best.pt"
    resume = read_checkpoint(last_path) if last_path.exists() else None
    if resume is not None and resume["config"] != cfg.to_dict():
        changed = sorted(k for k, v in cfg.to_dict().items() if resume["config"].get(k) != v)
        raise ValueError(f"{last_path} was trained with a different config ({', '.join(changed)}); "
                         "use a new --out or the same settings")

    train_bank = load_windows(urls, "train", cfg.window_frames, cfg.train_hop_frames, cfg.n_mels)
    try:
        val_bank = load_windows(urls, "val", cfg.window_frames, cfg.window_frames, cfg.n_mels)
    except ValueError:
        log.warning("no val windows: best.pt will be the last checkpoint")
        val_bank = None

    torch.manual_seed(cfg.seed)
    model = TalkListenModel(cfg)
    norm = compute_normalisation(train_bank)  # of the motion as it is: the metrics' units too
    model.set_normalisation(norm)
    if cfg.centre_clips:
        train_bank = with_clip_means_replaced(train_bank, norm["motion_mean"])
        val_bank = with_clip_means_replaced(val_bank, norm["motion_mean"]) if val_bank is not None else None
    model.to(dev)
    optimizer = _make_optimizer(model, cfg)
    step, best_val, elapsed_before = 0, float("inf"), 0.0
    if resume is not None:
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        step, best_val, elapsed_before = resume["step"], resume["best_val"], resume["elapsed_s"]
        log.info("resuming %s at step %d", last_path, step)
    train_bank, val_bank = train_bank.to(dev), val_bank.to(dev) if val_bank is not None else None
    atomic_write_text(out / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))

    end = cfg.total_steps if stop_at is None else min(stop_at, cfg.total_steps)
    model.train()
    bar = tqdm(total=end, initial=step, disable=not progress, desc=f"baseline {cfg.variant}", unit="step")
    recent: list[float] = []
    val = float("nan")
    while step < end:
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, cfg)
        loss = training_step(model, train_bank, cfg, step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        step += 1
        recent.append(loss.item())
        bar.update(1)
        if step % cfg.eval_every == 0 or step == end:
            in_prior = step <= cfg.prior_steps
            val, gains = validate(model, val_bank, cfg) if val_bank is not None and not in_prior else (float("nan"), {})
            elapsed = elapsed_before + time.perf_counter() - started
            record = {"step": step, "phase": "prior" if in_prior else "audio", "train_loss": float(np.mean(recent)),
                      "val_loss": _finite(val), "gains": gains, "elapsed_s": round(elapsed, 2)}
            recent.clear()
            bar.set_postfix(train=f"{record['train_loss']:.3f}", val=f"{val:.3f}")
            improved = not in_prior and (val < best_val or val_bank is None)
            best_val = min(best_val, val) if val_bank is not None and not in_prior else best_val
            extra = {"best_val": best_val, "elapsed_s": elapsed, "val_loss": val}
            save_checkpoint(last_path, model, optimizer, step, cfg, extra)
            if improved:
                save_checkpoint(best_path, model, optimizer, step, cfg, extra)
            with open(out / "log.jsonl", "a") as handle:
                handle.write(json.dumps(record) + "\n")
    bar.close()
    summary = {"step": step, "total_steps": cfg.total_steps, "best_val_loss": _finite(best_val),
               "last_val_loss": _finite(val),
               "train_windows": len(train_bank), "val_windows": len(val_bank) if val_bank is not None else 0,
               "train_identities": sorted(set(train_bank.identities)),
               "val_identities": sorted(set(val_bank.identities)) if val_bank is not None else [],
               "elapsed_s": round(elapsed_before + time.perf_counter() - started, 2), "device": str(dev),
               "threads": torch.get_num_threads(), "sigmas": model.sigmas(),
               "gains": gains_by_group(model.motion_gain, train_bank.blendshape_names)}
    atomic_write_text(out / "train_summary.json", json.dumps(summary, indent=2) + "\n")
    return summary
