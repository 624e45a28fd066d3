"""Same seed, same bytes; another seed, another video."""

from __future__ import annotations

from pathlib import Path

from voxhear.benchmarks.synth import compose_dataset

from .synth_helpers import needs_media, small_options


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@needs_media
def test_same_seed_gives_identical_files(composed: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    compose_dataset(small_options(again))
    first, second = _files(composed), _files(again)
    assert sorted(first) == sorted(second)
    assert "videos/synth-0000.mp4" in first and "truth/synth-0000/faces.parquet" in first
    different = [name for name in first if first[name] != second[name]]
    assert different == []


@needs_media
def test_other_seed_gives_other_video(composed: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    compose_dataset(small_options(other, seed=12))
    for name in ("videos/synth-0000.mp4", "truth/synth-0000/mix.flac", "truth/synth-0000/shots.parquet",
                 "truth/synth-0000/faces.parquet"):
        assert (composed / name).read_bytes() != (other / name).read_bytes(), name
