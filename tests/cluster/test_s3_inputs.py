"""Inputs on object storage: a folder of videos in a bucket on the S3 test server (conftest.py),
listed and copied in by the real ingest (size cap and timeout as for any remote input), processed
by the real shot stages into the same samples as the local files."""

from __future__ import annotations

from tests.conftest import SHOT_STAGES, make_video
from tests.manifests.test_resume import shard_contents
from voxhear.pipeline.config import load_config
from voxhear.pipeline.runner import run_pipeline


def test_a_folder_of_videos_in_a_bucket_is_processed_like_local_files(s3_server, tmp_path):
    local = tmp_path / "videos"
    make_video(local / "a.mp4", seconds=2.0, cuts=2)
    make_video(local / "b.mp4", seconds=1.6, cuts=1, size="176x144")
    bucket = s3_server.new_bucket()
    fs = s3_server.filesystem()
    for path in sorted(local.iterdir()):
        fs.put_file(str(path), f"{bucket}/videos/{path.name}")

    def run(inputs: str, name: str):
        config = load_config(None, [f"inputs=[{inputs}]", f"run_dir={tmp_path / name}", "runner=local", SHOT_STAGES])
        return run_pipeline(config, show_progress=False)

    remote = run(f"s3://{bucket}/videos/", "remote")
    assert remote.status_counts == {"ok": 2} and remote.clips == 3
    run(str(local), "local")
    got, _ = shard_contents(tmp_path / "remote")
    want, _ = shard_contents(tmp_path / "local")
    # The same samples; the json names the input, which differs (s3://... vs the local path).
    assert {k: v for k, v in got.items() if not k.endswith(".json")} == {
        k: v for k, v in want.items() if not k.endswith(".json")
    }
