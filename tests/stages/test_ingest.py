"""Every kind of bad input ends as one failed or filtered row with a reason; good inputs complete."""

import pyarrow.parquet as pq
import pytest

from tests.conftest import make_video
from voxhear.pipeline.runner import run_pipeline


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad")
    good = make_video(folder / "good.mp4", seconds=3.0, cuts=1)
    expected = {str(good): ("ok", "")}

    def expect(path, status, reason):
        expected[str(path)] = (status, reason)

    (folder / "zero.mp4").write_bytes(b"")
    expect(folder / "zero.mp4", "failed", "empty_file")
    (folder / "text.mp4").write_text("this is a text file that only pretends to be a video\n" * 20)
    expect(folder / "text.mp4", "failed", "probe_failed")
    data = good.read_bytes()
    (folder / "truncated.mp4").write_bytes(data[: len(data) // 2])
    expect(folder / "truncated.mp4", "failed", "probe_failed")  # the moov atom is gone with the tail
    ts = make_video(folder / "stream.ts", seconds=6.0, cuts=1)
    ts_bytes = ts.read_bytes()
    (folder / "truncated_stream.ts").write_bytes(ts_bytes[: len(ts_bytes) // 3])
    ts.unlink()
    # A cut MPEG-TS still probes; its declared duration is estimated from what is left, so it is
    # usable-but-short rather than failed: either outcome must say so in one row.
    expect(folder / "truncated_stream.ts", "ok", "")
    expect(make_video(folder / "no_audio.mp4", audio=None), "filtered", "no_audio_stream")
    expect(make_video(folder / "audio_only.m4a", video=False), "filtered", "no_video_stream")
    expect(make_video(folder / "silent.mp4", audio="silence"), "filtered", "silent_audio")
    expect(make_video(folder / "huge.mp4", seconds=1.0, size="5000x4000", fps="2"), "filtered", "frame_too_large")
    expect(make_video(folder / "ntsc.mp4", seconds=2.0, fps="30000/1001"), "ok", "")
    expect(make_video(folder / "slow.mp4", seconds=3.0, fps="7.5"), "ok", "")
    expect(make_video(folder / "absurd_fps.mp4", seconds=1.5, fps="1000"), "filtered", "unsupported_frame_rate")
    expect(make_video(folder / "tiny.mp4", seconds=0.4), "filtered", "too_short")
    expect(folder / "does_not_exist.mp4", "failed", "not_found")
    return folder, expected


def test_each_bad_input_becomes_one_row_with_its_reason(bad_inputs, run_config):
    folder, expected = bad_inputs
    list_file = folder / "inputs.txt"
    list_file.write_text("\n".join(expected) + "\n")
    config = run_config([str(list_file)], "ingest.max_pixels=10000000")
    summary = run_pipeline(config, show_progress=False)
    sources = pq.read_table(summary.run_dir / "manifests" / "sources.parquet").to_pylist()
    got = {row["source_uri"]: (row["status"], row["reason"]) for row in sources}
    assert got == expected
    for row in sources:
        if row["status"] != "ok":
            assert row["error_message"], row
            assert row["stage"] == "ingest"
    ok_rows = [row for row in sources if row["status"] == "ok"]
    for row in ok_rows:
        assert row["n_clips_ok"] >= 1 and row["norm_fps"] == 25.0
        assert abs(row["n_frames"] / 25.0 - row["duration_s"]) < 0.5
    clips = pq.read_table(summary.run_dir / "manifests" / "clips.parquet").to_pylist()
    assert {c["source_uri"] for c in clips if c["status"] == "ok"} == {r["source_uri"] for r in ok_rows}


def test_remote_input_through_fsspec(good_videos, run_config):
    import fsspec

    memory = fsspec.filesystem("memory")
    with memory.open("/bucket/clip.mp4", "wb") as handle:
        handle.write(good_videos[0].read_bytes())
    config = run_config(["memory://bucket/clip.mp4"])
    summary = run_pipeline(config, show_progress=False)
    sources = pq.read_table(summary.run_dir / "manifests" / "sources.parquet").to_pylist()
    assert [(s["source_uri"], s["status"]) for s in sources] == [("memory://bucket/clip.mp4", "ok")]
    assert sources[0]["n_shots"] == 2
