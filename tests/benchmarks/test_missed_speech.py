"""The missed-speech split (benchmarks/missed_speech.py): the parts add up to DER's missed share,
and each missed frame lands in the part its reference and stems say."""

from __future__ import annotations

import numpy as np
import pytest

from voxhear.benchmarks.missed_speech import HOP_S, frame_db, missed_parts, summarize

RATE = 16000


def _level(n: int, spans_db: list[tuple[float, float, float]], floor: float = -200.0) -> np.ndarray:
    """Per-frame dB: `floor`, and each (start s, end s, dB) span on top."""
    out = np.full(n, floor)
    for start, end, db in spans_db:
        out[int(round(start / HOP_S)) : int(round(end / HOP_S))] = db
    return out


def test_each_missed_frame_goes_to_overlap_drowned_or_audible():
    # A talks 0-4 s, B 3-6 s (1 s of overlap). The hypothesis has A 0-2 s only, so it misses:
    # A 2-3 (solo), A 3-4 and B 3-4 (overlap: 2 speaker-seconds), B 4-6 (solo).
    reference = [(0.0, 4.0, "A"), (3.0, 6.0, "B")]
    hypothesis = [(0.0, 2.0, "S0")]
    n = int(6.0 / HOP_S)
    # Background at -30 dB throughout; A at -20 (above it), B at -40 from 4 to 5 s and -20 after.
    stems = {
        "A": _level(n, [(0.0, 4.0, -20.0)]),
        "B": _level(n, [(3.0, 4.0, -20.0), (4.0, 5.0, -40.0), (5.0, 6.0, -20.0)]),
    }
    background = _level(n, [(0.0, 6.0, -30.0)])
    parts = missed_parts(reference, hypothesis, 6.0, stems, background)
    assert parts["reference_s"] == pytest.approx(7.0)
    assert parts["missed_s"] == pytest.approx(5.0)
    assert parts["overlap_s"] == pytest.approx(2.0)
    assert parts["drowned_s"] == pytest.approx(1.0)  # B 4-5 s, 10 dB under the background
    assert parts["audible_s"] == pytest.approx(2.0)  # A 2-3 s and B 5-6 s
    assert parts["overlap_s"] + parts["drowned_s"] + parts["audible_s"] == pytest.approx(parts["missed_s"])
    pooled = summarize([parts])
    assert pooled["missed"] == pytest.approx(5.0 / 7.0, abs=1e-4)
    assert pooled["drowned"] == pytest.approx(1.0 / 7.0, abs=1e-4)
    # Missed solo frames: 100 at +10 dB (A), 100 at -10 (B drowned), 100 at +10 (B): median +10.
    assert pooled["missed_solo_snr_db_quartiles"][1] == pytest.approx(10.0)


def test_a_hypothesis_with_fewer_speakers_than_the_overlap_misses_one_of_them():
    reference = [(0.0, 2.0, "A"), (0.0, 2.0, "B")]
    parts = missed_parts(reference, [(0.0, 2.0, "S0")], 2.0)
    assert parts["missed_s"] == pytest.approx(2.0)
    assert parts["overlap_s"] == pytest.approx(2.0)


def test_without_stems_every_missed_solo_frame_counts_as_audible():
    parts = missed_parts([(0.0, 1.0, "A")], [], 1.0)
    assert parts["audible_s"] == pytest.approx(1.0)
    assert parts["drowned_s"] == 0.0


def test_frame_db_measures_each_10ms_frame():
    tone = np.concatenate([np.full(RATE // 100, 0.1), np.zeros(RATE // 100)])
    level = frame_db(tone, RATE, 3)
    assert level[0] == pytest.approx(-20.0, abs=1e-6)
    assert level[1] < -150 and level[2] == -200.0  # silence, then past the end


def test_the_snr_bound_counts_speech_that_far_below_the_background_as_drowned():
    n = int(1.0 / HOP_S)
    stems, background = {"A": _level(n, [(0.0, 1.0, -34.0)])}, _level(n, [(0.0, 1.0, -30.0)])
    reference = [(0.0, 1.0, "A")]
    assert missed_parts(reference, [], 1.0, stems, background, snr_db=0.0)["drowned_s"] == pytest.approx(1.0)
    assert missed_parts(reference, [], 1.0, stems, background, snr_db=6.0)["drowned_s"] == 0.0  # only 4 dB below
    # A speaker with no stem of its own cannot be judged: audible, not drowned.
    parts = missed_parts([(0.0, 1.0, "B")], [], 1.0, stems, background)
    assert parts["audible_s"] == pytest.approx(1.0) and parts["drowned_s"] == 0.0
