"""Per-video values, pooled values, a bootstrap interval over videos and the worst video of a figure.

A metric reduces each video to *sufficient statistics* (frame counts, error and total seconds,
signal and error energies, per-clip values...) and gives one function, `pool`, that turns a list
of them into the figures. The same function then gives

- the per-video value: ``pool([stats of that video])``;
- the pooled value: ``pool(stats of all videos)`` (frames, seconds or clips of every video
  pooled: the micro average);
- the interval: the videos are resampled with replacement ``resamples`` times (fixed seed, so
  the interval is reproducible), the pooled value recomputed on each resample, and the
  ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of those values taken (percentile
  bootstrap). Resamples where the figure is undefined (nothing to score) are left out;
- the worst video: the lowest value of a higher-is-better figure, the highest of a lower-is-better
  one, among the videos where it is defined.

A broken video next to an easy one thus shows as a wide interval and as the worst video, where a
pooled number alone could hide it. Every metric draws the same resamples (same seed, same
number of videos), so intervals of different figures come from paired resamples.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

HIGHER = "higher"
LOWER = "lower"


def _defined(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def resample_indices(n_videos: int, resamples: int, seed: int) -> np.ndarray:
    """(resamples, n_videos) indices of videos drawn with replacement; reproducible for a seed."""
    if n_videos <= 0 or resamples <= 0:
        return np.zeros((0, max(n_videos, 0)), dtype=np.int64)
    return np.random.default_rng(seed).integers(0, n_videos, size=(resamples, n_videos))


def video_figures(stats: dict[str, Any], pool: Callable[[Sequence[Any]], dict[str, Any]], better: dict[str, str],
                  resamples: int = 1000, seed: int = 0, level: float = 0.95) -> tuple[dict, dict[str, dict], dict]:
    """Score every figure of `better` per video, pooled, with its interval and its worst video.

    Args:
        stats: Sufficient statistics per video id (the videos the metric scores), in report order.
        pool: Figures (a dict holding at least the keys of `better`; None when undefined) of a list
            of statistics, repeats allowed.
        better: Figure -> HIGHER or LOWER (which way is better).
        resamples: Bootstrap resamples of the videos (0: no interval).
        seed: The generator's seed.
        level: The interval's coverage (0.95: the 2.5 and 97.5 percentiles).

    Returns:
        (pooled figures, per-video figures, report) where report maps each figure to
        ``{"pooled", "interval": [lo, hi], "worst", "worst_video", "better", "videos"}``
        (``videos``: how many videos have the figure defined).
    """
    videos = list(stats)
    values = [stats[v] for v in videos]
    pooled = pool(values)
    per_video = {v: pool([s]) for v, s in zip(videos, values)}
    samples: dict[str, list[float]] = {k: [] for k in better}
    for index in resample_indices(len(values), resamples, seed):
        figures = pool([values[i] for i in index])
        for key in better:
            if _defined(figures.get(key)):
                samples[key].append(float(figures[key]))
    report: dict[str, dict] = {}
    lo_q, hi_q = 100 * (1 - level) / 2, 100 * (1 + level) / 2
    for key, direction in better.items():
        scored = [(v, per_video[v].get(key)) for v in videos if _defined(per_video[v].get(key))]
        worst_video, worst = None, None
        if scored:
            pick = min if direction == HIGHER else max
            worst_video, worst = pick(scored, key=lambda item: item[1])  # first video wins a tie
        interval = None
        if samples[key]:
            lo, hi = np.percentile(samples[key], [lo_q, hi_q])
            interval = [round(float(lo), 6), round(float(hi), 6)]
        report[key] = {"pooled": pooled.get(key), "interval": interval, "worst": worst, "worst_video": worst_video,
                       "better": direction, "videos": len(scored)}
    return pooled, per_video, report


def attach_figures(result, stats: dict[str, Any], pool: Callable[[Sequence[Any]], dict[str, Any]],
                   better: dict[str, str], settings) -> None:
    """Fill `result` (a MetricResult) with the figures: per-video rows and summary get every value
    `pool` gives (so table, pooled value, interval and worst video agree), `result.figures` the report
    of the figures in `better`."""
    pooled, per_video, report = video_figures(stats, pool, better, settings.bootstrap_resamples,
                                              settings.bootstrap_seed, settings.bootstrap_level)
    result.summary.update(pooled)
    for video, figures in per_video.items():
        result.per_video.setdefault(video, {}).update(figures)
    result.figures = report


def sum_arrays(parts: Sequence[np.ndarray], size: int) -> np.ndarray:
    """The element-wise sum of equal-length statistic vectors (zeros for none)."""
    return np.sum(parts, axis=0) if len(parts) else np.zeros(size)
