"""Clip windows cut around long overlapped stretches (stages/talk/windows.py)."""

from __future__ import annotations

import numpy as np

from voxhear.pipeline.records import STATE_BOTH, STATE_LISTEN, STATE_SILENCE, STATE_TALK
from voxhear.stages.talk.windows import clip_windows, overlap_share, overlap_split_windows, overlap_stretches

FPS = 25.0
CODES = {".": STATE_SILENCE, "T": STATE_TALK, "L": STATE_LISTEN, "B": STATE_BOTH}


def _states(*runs: tuple[str, float]) -> np.ndarray:
    """States from (code, seconds) runs."""
    return np.concatenate([np.full(round(s * FPS), CODES[c], np.uint8) for c, s in runs])


def _split(states: np.ndarray, windows=None) -> list[tuple[int, int]]:
    windows = windows or [(0, len(states))]
    return overlap_split_windows(windows, states, FPS, 2.0, 20.0, 0.3, 2.0, 0.5)


def test_stretches_bridge_short_gaps_and_drop_short_runs():
    states = _states(("T", 1), ("B", 3), ("L", 0.4), ("B", 1), ("T", 2), ("B", 1), ("T", 1))
    # 3 s + 0.4 s gap + 1 s are one stretch; the lone second of overlap later is too short.
    assert overlap_stretches(states, FPS, 2.0, 0.5) == [(25, 135)]
    assert overlap_stretches(states, FPS, 2.0, 0.2) == [(25, 100)]
    assert overlap_stretches(_states(("T", 5)), FPS, 2.0, 0.5) == []


def test_a_window_rejected_for_its_overlap_is_cut_so_the_clean_turns_remain():
    # As faces-wild's split-screen interview: 8 s of both talking at once, then clean turns.
    states = _states((".", 0.04), ("B", 8), ("L", 6), ("B", 1), ("T", 2.5))
    assert overlap_share(states) > 0.3
    windows = _split(states)
    # The leading frame of silence joins the stretch; the rest is one window with 6% overlap.
    assert windows == [(0, 201), (201, len(states))]
    assert overlap_share(states[201:]) < 0.3


def test_windows_cover_the_track_exactly_and_each_is_long_enough():
    rng = np.random.default_rng(0)
    for _ in range(200):
        runs = [(str(rng.choice(list("TLB."))), float(rng.uniform(0.1, 6))) for _ in range(rng.integers(1, 12))]
        states = _states(*runs, ("T", 2.0))
        windows = _split(states, clip_windows(len(states), FPS, 2.0, 20.0))
        edges = [a for a, _ in windows] + [windows[-1][1]]
        assert edges[0] == 0 and edges[-1] == len(states)
        assert all(b == c for (_, b), (c, _) in zip(windows, windows[1:], strict=False))
        assert all(50 <= b - a <= 500 for a, b in windows)


def test_a_window_the_filter_keeps_is_left_as_it_is():
    # 2.5 s of overlap in 20 s of speech is 12.5%: under the bound, so not cut.
    states = _states(("T", 8), ("B", 2.5), ("L", 9.5))
    assert _split(states) == [(0, len(states))]
    # Only the window that fails is cut; the one before it stays as it is.
    two = np.concatenate([_states(("T", 10)), _states(("T", 3), ("B", 5), ("L", 2))])
    assert _split(two, [(0, 250), (250, 500)]) == [(0, 250), (250, 325), (325, 450), (450, 500)]


def test_short_clean_spans_join_the_stretch_beside_them():
    # 1 s of clean speech at the start and between two stretches cannot be a clip of its own.
    states = _states(("T", 1), ("B", 3), ("L", 1), ("B", 3), ("T", 4))
    assert _split(states) == [(0, 200), (200, 300)]
