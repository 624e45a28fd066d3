"""One-to-one matching of predicted and true events, and the counts derived from it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment


def match_within(predicted: Sequence[float], truth: Sequence[float], tolerance: float) -> list[tuple[int, int]]:
    """Pairs (i, j) matching predicted[i] to truth[j], each used once, |difference| <= tolerance.

    Optimal: the most pairs possible, and among those the smallest total distance (a greedy
    match by distance can lose a pair when two truths compete for one prediction).
    """
    if len(predicted) == 0 or len(truth) == 0:
        return []
    p = np.asarray(predicted, dtype=np.float64)[:, None]
    t = np.asarray(truth, dtype=np.float64)[None, :]
    dist = np.abs(p - t)
    # Any pair out of tolerance costs more than all in-tolerance distances together, so the
    # assignment first maximizes the number of valid pairs.
    big = tolerance * (min(dist.shape) + 1) + 1.0
    cost = np.where(dist <= tolerance, dist, big)
    rows, cols = linear_sum_assignment(cost)
    return sorted((int(i), int(j)) for i, j in zip(rows, cols) if dist[i, j] <= tolerance)


@dataclass(slots=True)
class Counts:
    """True positives, false positives and false negatives, with the usual ratios.

    An empty side counts as perfect (nothing predicted: precision 1; nothing to find: recall 1),
    so a video without cuts where none were predicted scores 1, and F1 is 0 whenever either
    ratio is 0.
    """

    tp: int = 0
    fp: int = 0
    fn: int = 0

    def __add__(self, other: Counts) -> Counts:
        return Counts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn)

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def to_json(self) -> dict:
        return {"tp": self.tp, "fp": self.fp, "fn": self.fn, "precision": round(self.precision, 6),
                "recall": round(self.recall, 6), "f1": round(self.f1, 6)}
