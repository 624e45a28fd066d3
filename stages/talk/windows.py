"""Clip windows: where a face track is cut into clips.

Plain windows are equal parts of at most `max_s` (moved onto the crop video's keyframes where
that is possible, so clips are cut from it without re-encoding). A window the quality filter
would reject for its overlap is cut again around its long overlapped stretches
(`overlap_split_windows`), so that the stretch is rejected on its own and the rest of the
window can still be kept: a two-person recording that opens with both people talking at once
for eight seconds then turns into clean turn-taking gave no clip before. The windows of a track
always cover it exactly, each frame in one clip row, kept or filtered.
"""

from __future__ import annotations

import bisect

import numpy as np

from voxhear.pipeline.records import STATE_BOTH, STATE_LISTEN, STATE_TALK


def clip_windows(n_frames: int, fps: float, min_s: float, max_s: float) -> list[tuple[int, int]]:
    """Track-relative [start, end) windows: none below min_s, else equal parts of at most max_s."""
    if n_frames < round(min_s * fps):
        return []
    parts = int(np.ceil(n_frames / (max_s * fps)))
    edges = np.linspace(0, n_frames, parts + 1).round().astype(int)
    return list(zip(edges[:-1].tolist(), edges[1:].tolist()))


def keyframe_windows(
    n_frames: int, fps: float, min_s: float, max_s: float, keyframes: list[int]
) -> list[tuple[int, int]]:
    """`clip_windows` with every cut moved onto a neighbouring keyframe of the crop video (the
    nearer one unless that breaks the length range), so that clips are cut from the crop without
    re-encoding; the plain windows when that is not possible. As many windows as plain, within
    [min_s, max_s]; a track that makes one window is never cut."""
    windows = clip_windows(n_frames, fps, min_s, max_s)
    if len(windows) < 2 or len(keyframes) < 2:
        return windows
    keyframes = sorted(keyframes)
    spacing = max(b - a for a, b in zip(keyframes, keyframes[1:], strict=False))
    if spacing > max_s * fps / 4:  # too sparse to move cuts onto without reshaping the windows
        return windows
    shortest, longest = round(min_s * fps), round(max_s * fps)
    cuts: list[int] = []
    for i, (_, edge) in enumerate(windows[:-1]):
        at = bisect.bisect_right(keyframes, edge)
        around = {k for k in keyframes[max(at - 1, 0) : at + 1] if abs(k - edge) <= spacing}
        left = len(windows) - i - 1  # windows after this cut
        previous = cuts[-1] if cuts else 0
        fitting = [
            k
            for k in sorted(around, key=lambda k: (abs(k - edge), k))
            if shortest <= k - previous <= longest and left * shortest <= n_frames - k <= left * longest
        ]
        if not fitting:
            return windows
        cuts.append(fitting[0])
    edges = [0, *cuts, n_frames]
    return list(zip(edges[:-1], edges[1:], strict=True))


def overlap_stretches(states: np.ndarray, fps: float, min_s: float, bridge_s: float) -> list[tuple[int, int]]:
    """[start, end) runs of the `both` state at least `min_s` long, where runs less than
    `bridge_s` apart count as one (a breath or a frame of one voice does not end an overlap)."""
    both = np.flatnonzero(states == STATE_BOTH)
    if not len(both):
        return []
    gap = max(1, round(bridge_s * fps))
    breaks = np.flatnonzero(np.diff(both) > gap)
    starts = [int(both[0]), *(int(both[i + 1]) for i in breaks)]
    ends = [*(int(both[i]) + 1 for i in breaks), int(both[-1]) + 1]
    shortest = round(min_s * fps)
    return [(a, b) for a, b in zip(starts, ends, strict=True) if b - a >= shortest]


def overlap_share(states: np.ndarray) -> float:
    """The overlapped share of a window's speech frames (ClipRecord.overlap_share)."""
    speech = int(np.isin(states, (STATE_TALK, STATE_LISTEN, STATE_BOTH)).sum())
    return float((states == STATE_BOTH).sum() / speech) if speech else 0.0


def overlap_split_windows(
    windows: list[tuple[int, int]],
    states: np.ndarray,
    fps: float,
    min_s: float,
    max_s: float,
    max_share: float,
    stretch_s: float,
    bridge_s: float,
) -> list[tuple[int, int]]:
    """`windows` with each one whose overlapped share of speech exceeds `max_share` cut around its
    overlapped stretches (`overlap_stretches` of at least `stretch_s`): each stretch and each span
    between them becomes windows of its own (`clip_windows`), a span shorter than `min_s` joining
    the stretch before it (or after it, at the start). The others are left as they are."""
    out: list[tuple[int, int]] = []
    shortest = round(min_s * fps)
    for a, b in windows:
        stretches = overlap_stretches(states[a:b], fps, stretch_s, bridge_s)
        if not stretches or overlap_share(states[a:b]) <= max_share:
            out.append((a, b))
            continue
        # Segments [start, end) alternating between clean spans and stretches, covering [a, b).
        segments: list[list[int]] = []
        cursor = 0
        for start, end in stretches:
            if start > cursor:
                segments.append([cursor, start, 0])
            segments.append([start, end, 1])
            cursor = end
        if cursor < b - a:
            segments.append([cursor, b - a, 0])
        merged: list[list[int]] = []
        for segment in segments:
            start, end, stretch = segment
            if merged and (stretch or end - start < shortest) and merged[-1][2]:
                merged[-1][1] = end  # a stretch or a short span after a stretch joins it
            elif merged and stretch and merged[-1][1] - merged[-1][0] < shortest:
                merged[-1][1:] = [end, 1]  # a short span at the start joins the stretch after it
            else:
                merged.append(list(segment))
        for start, end, _ in merged:
            out += [(a + start + p, a + start + q) for p, q in clip_windows(end - start, fps, min_s, max_s)]
    return out
