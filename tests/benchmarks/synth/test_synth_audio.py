"""The audio ground truth: exact mix, stems, SNR and the VAD-derived labels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import soundfile as sf

from voxhear.benchmarks.synth import vad

from .synth_helpers import MEDIA, SMALL, needs_media

TRUTH = "truth/synth-0000"


@needs_media
def test_mix_is_exact_sum_of_stems(composed: Path) -> None:
    truth = composed / TRUTH
    stems = sorted((truth / "stems").glob("*.flac"))
    assert [p.stem for p in stems] == ["A", "B", "C", "background"]
    mix, rate = sf.read(truth / "mix.flac", dtype="int32")
    assert rate == 16000 and mix.ndim == 1 and len(mix) == SMALL["duration_s"] * 16000
    total = np.zeros(len(mix), dtype=np.int64)
    for path in stems:
        data, stem_rate = sf.read(path, dtype="int32")
        assert stem_rate == 16000 and len(data) == len(mix)
        assert np.abs(data).max() > 0, f"{path.name} is silent"
        total += data
    assert np.array_equal(total, mix)
    # The same holds for the float read-back that users will do.
    mix_f = sf.read(truth / "mix.flac", dtype="float64")[0]
    sum_f = sum(sf.read(p, dtype="float64")[0] for p in stems)
    assert np.array_equal(mix_f, sum_f)


@needs_media
def test_snr_is_in_range_and_measured(composed: Path) -> None:
    truth = composed / TRUTH
    meta = json.loads((truth / "meta.json").read_text())
    lo, hi = 5.0, 20.0  # SynthOptions defaults
    assert lo - 0.05 <= meta["snr_db"] <= hi + 0.05
    speech = sum(sf.read(truth / "stems" / f"{p}.flac", dtype="float64")[0] for p in ("A", "B", "C"))
    background = sf.read(truth / "stems" / "background.flac", dtype="float64")[0]
    active = speech != 0
    measured = 10 * np.log10(np.mean(speech[active] ** 2) / np.mean(background[active] ** 2))
    # Measured over all placed speech here, over the VAD-active part in meta: close, not equal.
    assert abs(measured - meta["snr_db"]) < 3.0


@needs_media
def test_rttm_and_speaking_labels_follow_the_stems(composed: Path) -> None:
    truth = composed / TRUTH
    meta = json.loads((truth / "meta.json").read_text())
    turns = [line.split() for line in (truth / "turns.rttm").read_text().splitlines()]
    assert turns and all(t[0] == "SPEAKER" and t[1] == "synth-0000" for t in turns)
    assert {t[7] for t in turns} == {"A", "B", "C"}
    for person in ("A", "B", "C"):
        stem = sf.read(truth / "stems" / f"{person}.flac", dtype="float64")[0]
        for t in (t for t in turns if t[7] == person):
            start, end = round(float(t[3]) * 16000), round((float(t[3]) + float(t[4])) * 16000)
            inside = stem[start:end]
            assert np.sqrt(np.mean(inside ** 2)) > 1e-3, "a turn over silence"
        # Outside every turn the stem holds no speech by the rule: at most a short blip.
        mask = np.ones(len(stem), dtype=bool)
        for t in (t for t in turns if t[7] == person):
            mask[round(float(t[3]) * 16000):round((float(t[3]) + float(t[4])) * 16000)] = False
        levels = vad.window_db(np.where(mask, stem, 0.0))
        assert np.mean(levels > -35) < 0.02
    speaking = pq.read_table(truth / "speaking.parquet").to_pylist()
    fps = meta["fps"]
    for row in speaking:
        mid = (row["frame"] + 0.5) / fps
        in_turn = any(t[7] == row["person_id"] and float(t[3]) <= mid < float(t[3]) + float(t[4]) + 1e-3
                      for t in turns)
        assert row["speaking"] == in_turn, row
    assert any(r["speaking"] for r in speaking) and not all(r["speaking"] for r in speaking)


@needs_media
def test_words_are_grid_transcripts_without_times(composed: Path) -> None:
    words = pq.read_table(composed / TRUTH / "words.parquet").to_pylist()
    meta = json.loads((composed / TRUTH / "meta.json").read_text())
    assert words
    assert all(w["start_s"] is None and w["end_s"] is None for w in words)
    assert {w["person_id"] for w in words} == {"A", "B"}  # the off-screen voice has no transcript
    transcripts = {}
    table = Path(meta["people"]["A"]["source"])  # faces-grid/<name>.mpg
    for line in (MEDIA / "faces-grid" / "transcripts.tsv").read_text().splitlines()[1:]:
        name, text = line.split("\t")
        transcripts[Path(name).stem] = text.split()
    assert table.parent.name == "faces-grid"
    by_utterance: dict[int, list[dict]] = {}
    for w in words:
        by_utterance.setdefault(w["utterance_index"], []).append(w)
    for ws in by_utterance.values():
        source = Path(meta["people"][ws[0]["person_id"]]["source"]).stem
        assert [w["word"] for w in sorted(ws, key=lambda w: w["word_index"])] == transcripts[source]
        assert ws[0]["segment_end_s"] > ws[0]["segment_start_s"]
