"""`voxhear eval` on a run whose work area was removed says how to keep it."""

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from voxhear.benchmarks.evaluation.cli import _require_work_files


def test_a_run_without_its_clip_files_is_refused_with_the_flag_that_keeps_them(tmp_path):
    (tmp_path / "manifests").mkdir()
    kept = tmp_path / "work" / "a" / "clip.npz"
    rows = {"clip_frames_uri": [str(tmp_path / "work" / "gone" / "clip.npz"), ""]}
    pq.write_table(pa.table(rows), tmp_path / "manifests" / "clips.parquet")
    with pytest.raises(FileNotFoundError, match="--keep-work"):
        _require_work_files(tmp_path)
    kept.parent.mkdir(parents=True)
    kept.write_bytes(b"x")
    rows["clip_frames_uri"].append(str(kept))
    pq.write_table(pa.table(rows), tmp_path / "manifests" / "clips.parquet")
    _require_work_files(tmp_path)  # some remain: scored as before
