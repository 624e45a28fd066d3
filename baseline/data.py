"""Windows of one split, read with `voxhear.dataset.loader.VoxHearWindows`, held in memory as features.

The baseline is small and so is its data: each window keeps only its log-mel features (two
streams), motion, validity and state (about 40 KB per 2 s window), which makes every training
step a random draw from memory: fast, and exactly repeatable by step for seeded resumption.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from voxhear.baseline.features import LogMel
from voxhear.baseline.model import MOTION_DIM

# MediaPipe FaceLandmarker's blendshape order, which the shards' `blendshape_names` record.
BLENDSHAPE_NAMES = (
    "_neutral", "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight", "cheekPuff",
    "cheekSquintLeft", "cheekSquintRight", "eyeBlinkLeft", "eyeBlinkRight", "eyeLookDownLeft", "eyeLookDownRight",
    "eyeLookInLeft", "eyeLookInRight", "eyeLookOutLeft", "eyeLookOutRight", "eyeLookUpLeft", "eyeLookUpRight",
    "eyeSquintLeft", "eyeSquintRight", "eyeWideLeft", "eyeWideRight", "jawForward", "jawLeft", "jawOpen", "jawRight",
    "mouthClose", "mouthDimpleLeft", "mouthDimpleRight", "mouthFrownLeft", "mouthFrownRight", "mouthFunnel",
    "mouthLeft", "mouthLowerDownLeft", "mouthLowerDownRight", "mouthPressLeft", "mouthPressRight", "mouthPucker",
    "mouthRight", "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper", "mouthSmileLeft",
    "mouthSmileRight", "mouthStretchLeft", "mouthStretchRight", "mouthUpperUpLeft", "mouthUpperUpRight",
    "noseSneerLeft", "noseSneerRight")


def expand_shards(patterns: str | list[str]) -> list[str]:
    """Shard paths from globs (`RUN/shards/*.tar`), brace patterns, folders or lists (the loader's rules)."""
    from voxhear.dataset.loader import expand_urls

    return expand_urls(patterns)


@dataclass
class WindowBank:
    """The windows of one split: features and targets stacked along the first axis."""

    self_mel: torch.Tensor  # (N, T, n_mels) log-mel of the on-screen person's speech
    other_mel: torch.Tensor  # (N, T, n_mels) everyone else's speech
    motion: torch.Tensor  # (N, T, 58) blendshapes then pose, shard units (0 where invalid)
    valid: torch.Tensor  # (N, T) bool: a face mesh was found
    state: torch.Tensor  # (N, T) int64 talk/listen codes
    keys: list[str] = field(default_factory=list)
    starts: list[int] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)  # real frames per window (less in a padded tail)
    identities: list[str] = field(default_factory=list)
    mix: torch.Tensor | None = None  # (N, T*640) mix audio, kept only for rendering
    blendshape_names: tuple[str, ...] = BLENDSHAPE_NAMES

    def __len__(self) -> int:
        return len(self.keys)

    def frame_clips(self) -> np.ndarray:
        """(N*T,) an integer clip id for every frame, in `flatten_frames` order."""
        return np.repeat(np.unique(self.keys, return_inverse=True)[1], self.valid.shape[1])

    def to(self, device: torch.device | str) -> WindowBank:
        move = {n: getattr(self, n).to(device) for n in ("self_mel", "other_mel", "motion", "valid", "state")}
        return WindowBank(**move, keys=self.keys, starts=self.starts, lengths=self.lengths, identities=self.identities,
                          mix=self.mix, blendshape_names=self.blendshape_names)


def load_windows(urls: list[str], split: str | None, window_frames: int, hop_frames: int, n_mels: int,
                 key: str | None = None, one_clip: bool = False, keep_mix: bool = False,
                 drop_partial: bool = True, chunk: int = 64) -> WindowBank:
    """Read every window of `split` (in stream order) and turn its audio into log-mel features.

    Args:
        urls: Shard paths or URLs.
        split: `train`, `val`, `test` or None for all.
        window_frames: Frames per window.
        hop_frames: Frames between window starts.
        n_mels: Mel bins.
        key: Keep only this clip's windows.
        one_clip: Keep only the windows of one clip (`key`, else the split's first).
        keep_mix: Also keep the mix audio (rendering).
        drop_partial: Skip a clip's tail shorter than a window; else pad it (invalid frames).
        chunk: Windows per feature computation.
    """
    from voxhear.dataset.loader import VoxHearWindows

    tracks = ("self", "other", "mix") if keep_mix else ("self", "other")
    dataset = VoxHearWindows(urls, split=split, window_frames=window_frames, hop_frames=hop_frames,
                             tracks=tracks, with_video=False, drop_partial=drop_partial)
    logmel = LogMel(n_mels)
    parts: dict[str, list[torch.Tensor]] = {n: [] for n in ("self_mel", "other_mel", "motion", "valid", "state", "mix")}
    keys, starts, lengths, identities = [], [], [], []
    pending: list[dict] = []
    names = BLENDSHAPE_NAMES

    def flush() -> None:
        if not pending:
            return
        parts["self_mel"].append(logmel(torch.stack([s["audio"]["self"] for s in pending])))
        parts["other_mel"].append(logmel(torch.stack([s["audio"]["other"] for s in pending])))
        motion = torch.cat([torch.stack([torch.as_tensor(s["blendshapes"]) for s in pending]),
                            torch.stack([torch.as_tensor(s["pose"]) for s in pending])], dim=-1).float()
        valid = torch.stack([torch.as_tensor(s["valid"]) for s in pending]).bool()
        # NaN poses of frames without a mesh must not leak into statistics or losses.
        parts["motion"].append(torch.nan_to_num(motion) * valid[..., None])
        parts["valid"].append(valid)
        parts["state"].append(torch.stack([torch.as_tensor(s["state"]) for s in pending]).long())
        if keep_mix:
            parts["mix"].append(torch.stack([s["audio"]["mix"] for s in pending]))
        pending.clear()

    for sample in dataset:
        if one_clip and key is None and keys:
            key = keys[0]
        if key is not None and sample["key"] != key:
            if keys and one_clip:  # a clip's windows arrive together: past it, stop reading
                break
            continue
        if "blendshape_names" in sample:
            names = tuple(str(n) for n in sample["blendshape_names"])
        keys.append(sample["key"])
        starts.append(int(sample["window_start"]))
        lengths.append(int(sample.get("length", window_frames)))
        identities.append(str(sample["identity_id"]))
        pending.append(sample)
        if len(pending) >= chunk:
            flush()
    flush()
    if not keys:
        raise ValueError(f"no windows of split {split!r}" + (f" and key {key!r}" if key else "")
                         + f" in {len(urls)} shard(s) (window {window_frames} frames)")
    stacked = {n: torch.cat(v) for n, v in parts.items() if v}
    if stacked["motion"].shape[-1] != MOTION_DIM:
        raise ValueError(f"expected 52 blendshapes + 6 pose, got {stacked['motion'].shape[-1]} values per frame")
    return WindowBank(**stacked, keys=keys, starts=starts, lengths=lengths, identities=identities,
                      blendshape_names=names)


def with_clip_means_replaced(bank: WindowBank, mean: torch.Tensor) -> WindowBank:
    """The bank with each clip's own mean motion (over its valid frames) replaced by `mean`.

    What stays is how the face moves within the clip. A person's resting face (how wide the
    mouth sits, where the head points) is not in the audio; left in the targets, a model learns
    to recognise the few training voices and reproduce their resting faces, which is noise on a
    new person. Overlapping windows share frames; each frame counts once in its clip's mean.
    """
    motion = bank.motion.clone()
    windows_of: dict[str, list[int]] = {}
    for i, key in enumerate(bank.keys):
        windows_of.setdefault(key, []).append(i)
    for rows in windows_of.values():
        frames: dict[int, torch.Tensor] = {}
        for i in rows:
            for t in torch.nonzero(bank.valid[i]).flatten().tolist():
                frames.setdefault(bank.starts[i] + t, bank.motion[i, t])
        if frames:
            shift = mean.to(motion) - torch.stack(list(frames.values())).mean(0)
            motion[rows] = (motion[rows] + shift) * bank.valid[rows][..., None]
    return WindowBank(self_mel=bank.self_mel, other_mel=bank.other_mel, motion=motion, valid=bank.valid,
                      state=bank.state, keys=bank.keys, starts=bank.starts, lengths=bank.lengths,
                      identities=bank.identities, mix=bank.mix, blendshape_names=bank.blendshape_names)


def concat_banks(banks: list[WindowBank]) -> WindowBank:
    """One bank of the windows of several (same window length and features)."""
    if len(banks) == 1:
        return banks[0]
    names = ("self_mel", "other_mel", "motion", "valid", "state")
    tensors = {n: torch.cat([getattr(b, n) for b in banks]) for n in names}
    mix = torch.cat([b.mix for b in banks]) if all(b.mix is not None for b in banks) else None
    return WindowBank(**tensors, keys=sum((b.keys for b in banks), []), starts=sum((b.starts for b in banks), []),
                      lengths=sum((b.lengths for b in banks), []), identities=sum((b.identities for b in banks), []),
                      mix=mix, blendshape_names=banks[0].blendshape_names)


def flatten_frames(x: torch.Tensor | np.ndarray) -> np.ndarray:
    """(N, T, ...) -> (N*T, ...) numpy."""
    x = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x
    return x.reshape(-1, *x.shape[2:])
