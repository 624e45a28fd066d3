"""The faces-wild check and the audio-only diarization benchmark: their parsing and scoring."""

from pathlib import Path

import pytest

from tests.conftest import require_shared
from voxhear.benchmarks.diarization_dev import der_parts, pool
from voxhear.benchmarks.synth.options import default_media_dir
from voxhear.benchmarks.wild_check import people_visible


def test_people_on_screen_come_from_the_sources_table():
    sources = default_media_dir() / "faces-wild" / "SOURCES.md"
    require_shared(sources, "faces-wild/SOURCES.md")
    people = people_visible(sources)
    assert len(people) == 19
    assert {name for name, n in people.items() if n == 2} == {"visualvoice_interview.mp4", "ghost_2person.mp4"}
    assert people["edtalk_uncrop_Obama.mp4"] == 1


def _rttm(path: Path, turns: list[tuple[float, float, str]]) -> Path:
    path.write_text("".join(f"SPEAKER x 1 {a:.3f} {b - a:.3f} <NA> <NA> {s} <NA> <NA>\n" for a, b, s in turns))
    return path


def test_der_counts_missed_overlap_and_pools_by_time(tmp_path):
    reference = _rttm(tmp_path / "ref.rttm", [(0, 4, "A"), (3, 6, "B")])  # 1 s of overlap: 7 s of speech
    perfect = _rttm(tmp_path / "perfect.rttm", [(0, 4, "x"), (3, 6, "y")])
    no_overlap = _rttm(tmp_path / "flat.rttm", [(0, 3, "x"), (3, 6, "y")])
    assert der_parts(reference, perfect, 6.0)["total"] == pytest.approx(7.0)
    flat = der_parts(reference, no_overlap, 6.0)
    assert flat["missed detection"] == pytest.approx(1.0) and flat["confusion"] == pytest.approx(0.0)
    pooled = pool([der_parts(reference, perfect, 6.0), flat])
    assert pooled["der"] == pytest.approx(1.0 / 14.0) and pooled["missed"] == pytest.approx(1.0 / 14.0)
    assert pool([])["der"] is None
