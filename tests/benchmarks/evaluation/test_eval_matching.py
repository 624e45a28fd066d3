"""The matching and the counts, on cases whose answers are known by hand."""

from __future__ import annotations

import pytest

from voxhear.benchmarks.evaluation.matching import Counts, match_within


def test_matches_within_tolerance_only() -> None:
    assert match_within([10, 20, 30], [11, 23, 40], tolerance=2) == [(0, 0)]
    assert match_within([10, 20, 30], [12, 18, 30], tolerance=2) == [(0, 0), (1, 1), (2, 2)]
    assert match_within([10], [13], tolerance=2) == []
    assert match_within([], [1, 2], tolerance=2) == [] and match_within([1], [], tolerance=2) == []


def test_each_event_is_used_once() -> None:
    # Two predictions next to one truth: one of them matches, the other is a false positive.
    assert len(match_within([10, 11], [10], tolerance=2)) == 1
    assert len(match_within([10], [9, 11], tolerance=2)) == 1


def test_optimal_where_greedy_by_distance_loses_a_pair() -> None:
    # Greedy takes the closest pair (13, 12) first and leaves 10 and 15 unmatched (5 apart);
    # the optimum pairs (10, 12) and (13, 15).
    assert match_within([10, 13], [12, 15], tolerance=2) == [(0, 0), (1, 1)]


def test_among_maximal_matchings_the_closest_wins() -> None:
    assert match_within([10], [9, 10], tolerance=2) == [(0, 1)]


def test_counts_ratios_and_conventions() -> None:
    c = Counts(tp=2, fp=2, fn=1)
    assert c.precision == pytest.approx(0.5) and c.recall == pytest.approx(2 / 3)
    assert c.f1 == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    assert Counts().precision == 1.0 and Counts().recall == 1.0 and Counts().f1 == 1.0
    assert Counts(fn=3).f1 == 0.0 and Counts(fn=3).precision == 1.0 and Counts(fn=3).recall == 0.0
    assert Counts(fp=3).f1 == 0.0
    assert (Counts(1, 2, 3) + Counts(4, 5, 6)) == Counts(5, 7, 9)
