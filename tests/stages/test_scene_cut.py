import pyarrow.parquet as pq

from tests.conftest import make_video
from voxhear.pipeline.runner import run_pipeline


def test_shots_follow_the_real_cuts(tmp_path, run_config):
    # Three 2 s segments at 25 fps: cuts at frames 50 and 100, on the normalized timeline.
    video = make_video(tmp_path / "three.mp4", seconds=6.0, cuts=3, size="320x240")
    summary = run_pipeline(run_config([str(video)]), show_progress=False)
    clips = pq.read_table(summary.run_dir / "manifests" / "clips.parquet").to_pylist()
    starts = sorted(c["start_frame"] for c in clips)
    assert len(starts) == 3
    for got, want in zip(starts, [0, 50, 100]):
        assert abs(got - want) <= 1
    assert max(c["end_frame"] for c in clips) == 150
    assert all("." not in c["key"] for c in clips)


def test_short_shots_are_kept_as_filtered_rows(tmp_path, run_config):
    video = make_video(tmp_path / "three.mp4", seconds=6.0, cuts=3, size="320x240")
    summary = run_pipeline(run_config([str(video)], "scene_cut.min_shot_s=2.5"), show_progress=False)
    clips = pq.read_table(summary.run_dir / "manifests" / "clips.parquet").to_pylist()
    assert [c["status"] for c in clips] == ["filtered"] * 3
    assert {c["reason"] for c in clips} == {"shot_too_short"}
    sources = pq.read_table(summary.run_dir / "manifests" / "sources.parquet").to_pylist()
    assert sources[0]["status"] == "filtered" and sources[0]["reason"] == "no_clip_kept"
