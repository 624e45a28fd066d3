"""Talk and listen metrics of predicted face motion, each beside a mean-pose baseline.

Motion is (frames, 58): the shards' 52 blendshapes then pose (yaw, pitch, roll in degrees,
translation in cm). Talking frames are those where the on-screen person speaks (state talk or
both); listening frames are those where only someone else speaks (state listen).

- Talking (lip sync): L1 of the mouth blendshapes (names starting with `jaw` or `mouth`) and the
  Pearson correlation of predicted and true `jawOpen` over all talking frames; given clip ids,
  also the mean of the per-clip correlations (clips with at least 10 talking frames), which
  ignores how one clip's resting jaw differs from another's. A constant prediction has no
  correlation; it is reported as 0.
- Listening (distribution of reactions): Fréchet distance between the Gaussians fitted to
  predicted and true per-frame motion, and diversity (mean pairwise distance between frames),
  both on motion standardised with the training split's per-dimension std so degrees,
  centimetres and blendshape scores weigh alike. Given clip ids, each clip's motion is first
  taken relative to its own mean (over its valid frames, separately for prediction and truth):
  on held-out identities the distance would otherwise mostly measure how far a new person's
  resting head pose is from the training people's, which no model of the audio can know.
  `fd_absolute` is the distance without that centring. Diversity is judged by its distance to
  the true diversity: the mean pose has none.
"""

from __future__ import annotations

import numpy as np

from voxhear.pipeline.records import STATE_BOTH, STATE_LISTEN, STATE_TALK

TALKING_STATES = (STATE_TALK, STATE_BOTH)
LISTENING_STATES = (STATE_LISTEN,)
DIVERSITY_SAMPLES = 1000
MIN_CLIP_TALKING_FRAMES = 10


def mouth_indices(names: list[str]) -> list[int]:
    """Indices of the jaw* and mouth* blendshapes."""
    return [i for i, n in enumerate(names) if str(n).startswith(("jaw", "mouth"))]


def mouth_l1(pred: np.ndarray, true: np.ndarray, names: list[str]) -> float:
    """Mean absolute error over the mouth blendshapes of (frames, >=52) arrays."""
    idx = mouth_indices(names)
    if len(pred) == 0:
        return float("nan")
    return float(np.abs(pred[:, idx] - true[:, idx]).mean())


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation; 0 when either side is constant, NaN with fewer than 2 values."""
    if len(a) < 2:
        return float("nan")
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    a, b = a - a.mean(), b - b.mean()
    denom = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denom) if denom > 1e-12 else 0.0


def _psd_sqrt(a: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((a + a.T) / 2.0)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(x: np.ndarray, y: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to the rows of x and of y.

    tr((C_x C_y)^1/2) is computed as tr((C_x^1/2 C_y C_x^1/2)^1/2), which has the same value and is
    symmetric, so a singular covariance (few frames, a constant predictor) is no trouble.
    """
    if len(x) < 2 or len(y) < 2:
        return float("nan")
    diff = x.mean(0) - y.mean(0)
    cov_x, cov_y = np.atleast_2d(np.cov(x, rowvar=False)), np.atleast_2d(np.cov(y, rowvar=False))
    root_x = _psd_sqrt(cov_x)
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(root_x @ cov_y @ root_x), 0.0, None)).sum()
    return float(max(diff @ diff + np.trace(cov_x) + np.trace(cov_y) - 2.0 * cross, 0.0))


def diversity(x: np.ndarray, seed: int = 0, max_samples: int = DIVERSITY_SAMPLES) -> float:
    """Mean Euclidean distance between pairs of distinct rows (a seeded subset of at most max_samples)."""
    if len(x) < 2:
        return float("nan")
    if len(x) > max_samples:
        x = x[np.random.default_rng(seed).choice(len(x), max_samples, replace=False)]
    d = np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))
    n = len(x)
    return float(d.sum() / (n * (n - 1)))


def centre_per_clip(x: np.ndarray, clips: np.ndarray | None, valid: np.ndarray) -> np.ndarray:
    """x minus each clip's mean over its valid frames (x unchanged without clip ids)."""
    if clips is None:
        return x
    x = np.asarray(x, np.float64)
    out = x.copy()
    for clip in np.unique(clips):
        rows = clips == clip
        if (rows & valid).any():
            out[rows] -= x[rows & valid].mean(0)
    return out


def _talk_listen(pred: np.ndarray, true: np.ndarray, valid: np.ndarray, talking: np.ndarray,
                 listening: np.ndarray, names: list[str], jaw: int, scale: np.ndarray, seed: int,
                 clips: np.ndarray | None) -> dict:
    pt, tt = pred[talking], true[talking]
    per_clip = None
    if clips is not None:
        corrs = [pearson(pred[rows, jaw], true[rows, jaw]) for c in np.unique(clips)
                 if (rows := talking & (clips == c)).sum() >= MIN_CLIP_TALKING_FRAMES]
        per_clip = float(np.mean(corrs)) if corrs else float("nan")
    pc = centre_per_clip(pred, clips, valid)[listening] / scale
    tc = centre_per_clip(true, clips, valid)[listening] / scale
    return {
        "talking": {"mouth_l1": mouth_l1(pt, tt, names), "jaw_open_corr": pearson(pt[:, jaw], tt[:, jaw]),
                    "jaw_open_corr_clip_mean": per_clip},
        "listening": {"fd": frechet_distance(pc, tc), "diversity": diversity(pc, seed),
                      "fd_absolute": frechet_distance(pred[listening] / scale, true[listening] / scale)},
    }


def evaluate_motion(pred: np.ndarray, true: np.ndarray, state: np.ndarray, valid: np.ndarray,
                    names: list[str], mean_pose: np.ndarray, scale: np.ndarray, seed: int = 0,
                    clips: np.ndarray | None = None) -> dict:
    """Score predicted motion and a mean-pose baseline against the truth.

    Args:
        pred: (frames, 58) predicted blendshapes + pose, shard units.
        true: (frames, 58) true motion.
        state: (frames,) talk/listen state codes.
        valid: (frames,) True where the true frame had a face mesh.
        names: The 52 blendshape names (order of the first 52 columns).
        mean_pose: (58,) the training split's mean motion (the baseline to beat).
        scale: (58,) the training split's per-dimension std, for the listening metrics.
        seed: Seeds the subset the diversity is measured on.
        clips: (frames,) clip id of each frame: listening metrics on motion relative to each
            clip's mean (None: absolute motion).

    Returns:
        JSON-ready dict: frame counts, model / mean_pose / true scores per part, and which
        comparisons the model wins.
    """
    names = [str(n) for n in names]
    valid = valid.astype(bool)
    talking = valid & np.isin(state, TALKING_STATES)
    listening = valid & np.isin(state, LISTENING_STATES)
    jaw = names.index("jawOpen")
    scale = np.where(scale > 1e-6, scale, 1.0)
    model = _talk_listen(pred, true, valid, talking, listening, names, jaw, scale, seed, clips)
    mean = _talk_listen(np.broadcast_to(mean_pose, true.shape), true, valid, talking, listening, names, jaw, scale,
                        seed, clips)
    true_div = diversity(centre_per_clip(true, clips, valid)[listening] / scale, seed)
    result = {
        "frames": {"valid": int(valid.sum()), "talking": int(talking.sum()), "listening": int(listening.sum())},
        "talking": {"model": model["talking"], "mean_pose": mean["talking"]},
        "listening": {"model": model["listening"], "mean_pose": mean["listening"], "true": {"diversity": true_div}},
    }
    m, b = result["talking"]["model"], result["talking"]["mean_pose"]
    lm, lb = result["listening"]["model"], result["listening"]["mean_pose"]
    result["beats_mean_pose"] = {
        "mouth_l1": bool(m["mouth_l1"] < b["mouth_l1"]),
        "jaw_open_corr": bool(m["jaw_open_corr"] > b["jaw_open_corr"]),
        "listening_fd": bool(lm["fd"] < lb["fd"]),
        "listening_diversity": bool(abs(lm["diversity"] - true_div) < abs(lb["diversity"] - true_div)),
    }
    result["beats_mean_pose"]["all"] = all(result["beats_mean_pose"].values())
    return result
