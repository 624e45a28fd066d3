"""A damaged shard (cut short by a disk that filled or a copy that stopped, or a byte changed) is
caught by verify, before and after a resume (which never rewrites a committed shard); a takedown
never copies it (that would record the damage as the shard's new sha256): taking down only some of
its samples is refused, taking down all of them removes it, the run verifies again, and no resume
brings them back.

tests/manifests/test_verify_takedown.py covers verify's side of a flipped byte, a damaged header,
undecodable members, missing and unknown shards and a taken-down sample put back; this adds
truncation and the way out of a damaged shard.
"""

from __future__ import annotations

import tarfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.manifests.test_verify_takedown import samples
from tests.reliability.fakes import PLAIN, synthetic_video, use_synthetic_stages
from voxhear.manifests.takedown import TakedownError, takedown
from voxhear.manifests.verify import verify_run
from voxhear.pipeline.config import load_config
from voxhear.pipeline.runner import run_pipeline

SETTINGS = ["runner=local", "shards.max_samples=2", PLAIN]


@pytest.fixture(autouse=True)
def synthetic(monkeypatch):
    use_synthetic_stages(monkeypatch)


def run(inputs: Path, run_dir: Path):
    return run_pipeline(load_config(None, [f"inputs=[{inputs}]", f"run_dir={run_dir}", *SETTINGS]), show_progress=False)


@pytest.mark.parametrize("cut", ["mid_member", "end_blocks", "flipped"])
def test_a_damaged_shard_is_caught_and_a_takedown_of_its_samples_sticks(tmp_path, cut):
    inputs = tmp_path / "in"
    for name, shots in (("a", 2), ("b", 3)):
        synthetic_video(inputs / f"{name}.mp4", shots=shots, identity=0)
    run_dir = tmp_path / "run"
    run(inputs, run_dir)
    before = samples(run_dir)
    shard = run_dir / "shards" / "000001.tar"
    data = shard.read_bytes()
    with tarfile.open(shard) as tar:
        last = tar.getmembers()[-1]
    # mid_member: the file ends inside its last member; end_blocks: only the tar's end-of-archive
    # zero blocks are lost; flipped: one byte of the last member changed (the tar reads to its end
    # in both: the sha256 alone tells).
    if cut == "mid_member":
        data = data[: last.offset_data + last.size // 2]
    elif cut == "end_blocks":
        data = data.rstrip(b"\0")
    else:
        data = data[: last.offset_data + 3] + bytes([data[last.offset_data + 3] ^ 0xFF]) + data[last.offset_data + 4 :]
    shard.write_bytes(data)

    def problems() -> list[str]:
        return [p.format() for p in verify_run(run_dir).problems]

    found = problems()
    assert found and all(p.startswith("000001.tar") for p in found), found
    assert any("sha256" in p for p in found)
    if cut == "mid_member":
        assert any(f"{last.name} is truncated" in p or "unreadable tar" in p for p in found), found
    run(inputs, run_dir)  # a resume neither hides nor repairs it
    assert problems() == found

    rows = pq.read_table(run_dir / "manifests" / "clips.parquet").to_pylist()
    broken = sorted(r["key"] for r in rows if r["shard"] == shard.name and r["status"] == "ok")
    assert broken == sorted(k for k, s in before.items() if s == shard.name) and len(broken) == 2
    # Its samples are not copied out of it (that would record the damage as its new sha256): taking
    # down only some of them is refused, changing nothing.
    with pytest.raises(TakedownError, match=rf"shard 000001.tar is damaged .*{broken[1]}.*nothing was taken down"):
        takedown(run_dir, keys=broken[:1])
    assert problems() == found
    result = takedown(run_dir, keys=broken, reason="shard 000001.tar truncated")
    assert result.shards_removed == [shard.name] and not shard.exists()
    assert verify_run(run_dir).ok, problems()
    for _ in range(2):
        summary = run(inputs, run_dir)
        assert summary.skipped == 2
        assert set(samples(run_dir)) == set(before) - set(broken)
        assert verify_run(run_dir).ok, problems()
