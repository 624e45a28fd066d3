"""The rows a stage fans one source out into spread over the Ray workers (issue 15).

A fan-out stage returns one source's rows as one Ray block, and a block goes whole to one worker of
the next stage: before the fix the shots of a long source ran one after another on one worker.
"""

import os
import time
from fractions import Fraction

import pyarrow.parquet as pq
import pytest
import ray

from tests.conftest import SHOT_STAGES, make_video
from tests.pipeline.test_runners import comparable
from voxhear.pipeline.config import RayConfig, load_config
from voxhear.pipeline.executors import RayExecutor
from voxhear.pipeline.records import ShotRecord, SourceRecord
from voxhear.pipeline.runner import run_pipeline
from voxhear.pipeline.stage import Stage

SHOTS = 6
SECONDS_PER_SHOT = 1.0


class FanOut(Stage[SourceRecord, ShotRecord]):
    """One source into SHOTS shots, at once."""

    name = "fan_out"
    input_type = SourceRecord
    output_type = ShotRecord

    def process(self, row):
        return [ShotRecord.from_parent(row, shot_index=i, key=f"{row.source_uri}-{i}") for i in range(SHOTS)]


class SlowShot(Stage[ShotRecord, ShotRecord]):
    """A second per shot; records which process ran it (segment_video_uri) and when (start_s, end_s)."""

    name = "slow_shot"
    input_type = ShotRecord
    output_type = ShotRecord

    def process(self, row):
        start = time.time()
        time.sleep(SECONDS_PER_SHOT)
        return [ShotRecord.from_parent(row, shot_index=row.shot_index, key=row.key, segment_video_uri=str(os.getpid()),
                                       start_s=start, end_s=time.time())]


class Collect:
    def __init__(self):
        self.rows = []

    def consume(self, rows):
        self.rows.extend(rows)


def run_one_source(spread: bool):
    executor = RayExecutor(RayConfig(num_cpus=4), show_progress=False)
    executor.spread_rows = spread
    sink = Collect()
    try:
        executor.execute([FanOut(None, None), SlowShot(None, None)], [SourceRecord(source_uri="long.mp4")], sink)
    finally:
        ray.shutdown()
    assert sorted(r.shot_index for r in sink.rows) == list(range(SHOTS))
    assert sum(Fraction(1, r.share_den) for r in sink.rows) == 1
    return sink.rows


def overlapping(rows) -> bool:
    spans = sorted((r.start_s, r.end_s) for r in rows)
    return any(later[0] < earlier[1] for earlier, later in zip(spans, spans[1:]))


@pytest.mark.slow
def test_the_shots_of_one_source_run_on_several_workers_at_once():
    rows = run_one_source(spread=True)
    assert len({r.segment_video_uri for r in rows}) > 1, "every shot ran in one worker process"
    assert overlapping(rows), "no two shots of the source ran at the same time"


@pytest.mark.slow
def test_without_the_reblocking_one_worker_runs_the_shots_one_after_another():
    """What the fix changes: the fan-out's block goes whole to one task of the next stage."""
    rows = run_one_source(spread=False)
    assert len({r.segment_video_uri for r in rows}) == 1
    assert not overlapping(rows)


@pytest.mark.slow
def run_in_process_and_on_ray(video, tmp_path, *overrides: str) -> dict:
    """runner -> run directory of the shot stages on `video`, in-process and on a local Ray of 4 CPUs."""
    runs = {}
    for runner in ("local", "ray"):
        run_dir = tmp_path / runner
        config = load_config(None, [f"inputs=['{video}']", f"run_dir={run_dir}", f"runner={runner}", "ray.num_cpus=4",
                                    *overrides, SHOT_STAGES])
        try:
            run_pipeline(config, show_progress=False)
        finally:
            ray.shutdown()
        runs[runner] = run_dir
    return runs


def test_a_source_split_into_many_shots_gives_the_same_samples_on_ray_as_in_process(tmp_path):
    video = make_video(tmp_path / "in" / "four_cuts.mp4", seconds=4.0, cuts=4)
    runs = run_in_process_and_on_ray(video, tmp_path)
    local, on_ray = comparable(runs["local"]), comparable(runs["ray"])
    assert on_ray == local
    (source,) = local["sources"]
    assert source["status"] == "ok" and source["n_shots"] == 4 == source["n_clips_ok"]
    # One commit holds the whole source, and each of its samples once.
    clips = pq.read_table(runs["ray"] / "manifests" / "clips.parquet").to_pylist()
    assert len({c["key"] for c in clips}) == len(clips) == 4 and len({c["commit"] for c in clips}) == 1


def test_long_shots_are_cut_into_equal_pieces_marked_as_seams():
    from voxhear.stages.scene_cut import split_long_shots

    assert split_long_shots([(0, 100), (100, 1100)], 300) == [
        (0, 100, False), (100, 350, False), (350, 600, True), (600, 850, True), (850, 1100, True)]
    assert split_long_shots([(0, 300)], 300) == [(0, 300, False)]
    assert split_long_shots([(0, 301)], 300) == [(0, 150, False), (150, 301, True)]


def test_a_single_long_shot_cut_into_rows_gives_the_same_samples_on_ray_as_in_process(tmp_path):
    """One 6 s shot with scene_cut.max_shot_s=2: three rows, spread over the Ray workers like
    shots, and the same samples as the in-process runner (the sink completes the source once)."""
    video = make_video(tmp_path / "in" / "one_shot.mp4", seconds=6.0, cuts=1)
    runs = run_in_process_and_on_ray(video, tmp_path, "scene_cut.max_shot_s=2")
    local, on_ray = comparable(runs["local"]), comparable(runs["ray"])
    assert on_ray == local
    (source,) = local["sources"]
    assert source["status"] == "ok" and source["n_shots"] == 3 == source["n_clips_ok"]
    pieces = sorted((c["start_frame"], c["end_frame"], c["seam"]) for c in local["clips"])
    assert pieces == [(0, 50, False), (50, 100, True), (100, 150, True)]
