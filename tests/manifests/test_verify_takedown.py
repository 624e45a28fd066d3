"""`voxhear verify` and `voxhear takedown` on a real small run (shot stages over ffmpeg test videos).

The run is made once; every test works on its own copy.
"""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import SHOT_STAGES, make_video
from voxhear.manifests import Ledger, SourceManifestRow, clip_row_type, consolidate
from voxhear.manifests import integrity
from voxhear.manifests.integrity import ShardRewrite, shard_records, takedown_records
from voxhear.manifests.takedown import TakedownError, takedown
from voxhear.manifests.verify import verify_run
from voxhear.passes.splits import write_splits
from voxhear.pipeline.cli import main
from voxhear.pipeline.config import load_config
from voxhear.pipeline.io import sha256_file
from voxhear.pipeline.shards import copy_members
from voxhear.pipeline.records import ShotRecord
from voxhear.pipeline.runner import run_pipeline
from voxhear.stages.talk.tracks import split_tracks, write_int24

SETTINGS = ["runner=local", "shards.max_samples=2", SHOT_STAGES, "keep_work=true"]


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("verify-inputs")
    for i in range(3):
        make_video(folder / f"video{i}.mp4", seconds=2.0 + 0.4 * i, cuts=2, size="160x120")
    return folder


def run(videos: Path, run_dir: Path):
    config = load_config(None, [f"inputs=[{videos}]", f"run_dir={run_dir}", *SETTINGS])
    return run_pipeline(config, show_progress=False)


@pytest.fixture(scope="module")
def reference(videos, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("verify-reference") / "run"
    run(videos, run_dir)
    return run_dir


@pytest.fixture
def run_dir(reference, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(reference, copy)
    return copy


def samples(run_dir: Path) -> dict[str, str]:
    """sample key -> shard, from the shards."""
    out = {}
    for shard in sorted((run_dir / "shards").glob("*.tar")):
        with tarfile.open(shard) as tar:
            out.update({name.partition(".")[0]: shard.name for name in tar.getnames()})
    return out


def ok_clips(run_dir: Path) -> dict[str, dict]:
    rows = pq.read_table(run_dir / "manifests" / "clips.parquet").to_pylist()
    return {r["key"]: r for r in rows if r["status"] == "ok"}


def verify_cli(run_dir: Path, capsys) -> tuple[int, list[str]]:
    code = main(["verify", str(run_dir)])
    captured = capsys.readouterr()
    return code, (captured.out + captured.err).splitlines()


def add_member(shard: Path, name: str, data: bytes) -> None:
    with tarfile.open(shard) as tar:
        members = [(info, tar.extractfile(info).read()) for info in tar.getmembers()]
    with tarfile.open(shard, "w") as out:
        for info, content in [*members, (tarfile.TarInfo(name), data)]:
            info.size = len(content)
            out.addfile(info, io.BytesIO(content))


# ---------------------------------------------------------------- verify


def test_a_clean_run_verifies_and_the_ledger_holds_every_shard_sha256(run_dir, capsys):
    shards = sorted(p.name for p in (run_dir / "shards").glob("*.tar"))
    assert len(shards) >= 3 and len(samples(run_dir)) >= 6
    records = shard_records(run_dir)
    assert sorted(records) == shards
    assert all(records[name].sha256 == sha256_file(run_dir / "shards" / name) for name in shards)
    assert {records[name].cause for name in shards} == {"sink"}

    report = verify_run(run_dir)
    assert report.ok, report.problems
    assert (report.shards, report.samples, report.manifest_rows) == (len(shards), len(samples(run_dir)),
                                                                       len(ok_clips(run_dir)))
    code, lines = verify_cli(run_dir, capsys)
    assert code == 0 and len(lines) == 1 and lines[0].startswith("verified ")


def test_a_flipped_byte_is_caught_naming_the_shard(run_dir, capsys):
    shard = run_dir / "shards" / "000001.tar"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    code, lines = verify_cli(run_dir, capsys)
    assert code == 1
    assert any(line.startswith("000001.tar: sha256 ") and "differs from the ledger" in line for line in lines)
    assert "problem(s)" in lines[-1]


def test_a_damaged_tar_header_is_caught(run_dir):
    shard = run_dir / "shards" / "000000.tar"
    with tarfile.open(shard) as tar:
        second = tar.getmembers()[1].offset  # the second member's header
    data = bytearray(shard.read_bytes())
    data[second + 3] ^= 0xFF  # its name: the header checksum no longer matches
    shard.write_bytes(bytes(data))
    whats = [p.what for p in verify_run(run_dir).problems if p.shard == "000000.tar"]
    assert any("sha256" in w for w in whats)
    assert any("rest is not padding" in w or "unreadable tar" in w for w in whats)


def test_a_deleted_manifest_row_is_caught(run_dir, capsys):
    path = run_dir / "manifests" / "clips.parquet"
    clips = pq.read_table(path)
    key = ok_clips(run_dir).popitem()[0]
    pq.write_table(clips.filter(pa.compute.not_equal(clips.column("key"), key)), path)
    code, lines = verify_cli(run_dir, capsys)
    shard = samples(run_dir)[key]
    assert code == 1 and f"{shard} {key}: sample has no ok row in clips.parquet" in lines


def test_an_extra_sample_is_caught(run_dir):
    shard = run_dir / "shards" / "000000.tar"
    add_member(shard, "intruder-00000000.json", b'{"key": "intruder-00000000"}')
    problems = {(p.shard, p.key): p.what for p in verify_run(run_dir).problems}
    assert problems[("000000.tar", "intruder-00000000")] == "sample has no ok row in clips.parquet"
    assert "sha256" in problems[("000000.tar", "")]


def test_a_member_that_does_not_decode_is_caught(run_dir):
    shard = run_dir / "shards" / "000000.tar"
    key = next(k for k, s in samples(run_dir).items() if s == shard.name)
    rewrite = ShardRewrite(run_dir, cause="test")  # a consistent ledger, so only the decoding fails
    with tarfile.open(shard) as tar, tarfile.open(rewrite.stage(shard.name), "w") as out:
        for info in tar.getmembers():
            data = tar.extractfile(info).read()
            if info.name in (f"{key}.flac", f"{key}.mp4", f"{key}.json"):
                data = b"not media at all"
            info.size = len(data)
            out.addfile(info, io.BytesIO(data))
    rewrite.commit()
    whats = sorted(p.what.split(":")[0] for p in verify_run(run_dir).problems)
    assert whats == ["flac does not decode", "json does not decode", "mp4 does not decode"]


def test_a_missing_or_unrecorded_shard_is_caught(run_dir):
    shutil.move(run_dir / "shards" / "000000.tar", run_dir / "shards" / "000900.tar")
    problems = [(p.shard, p.what) for p in verify_run(run_dir).problems]
    assert ("000900.tar", "shard is not in the ledger (no sha256 recorded for it)") in problems
    assert any(s == "000000.tar" and w.startswith("shard is missing") for s, w in problems)


# ---------------------------------------------------------------- audio tracks sum to the mix


def fabricated_run(run_dir: Path, other_delta: int = 0) -> Path:
    """One committed source with one sample of four 24-bit tracks made as the talk stage makes them
    (self + other + background == mix), `other_delta` added to one sample of `other`."""
    rng = np.random.default_rng(0)
    mix = rng.integers(-2**21, 2**21, 3200)
    speech = mix * rng.uniform(0.2, 0.9, mix.size)
    mask = (np.arange(mix.size) // 800) % 2 == 0
    tracks = split_tracks(mix, speech, mask.astype(float), (~mask).astype(float))
    tracks["other"][1234] += other_delta
    flac = {}
    for name, values in tracks.items():
        write_int24(run_dir.parent / f"{name}.flac", values, 16000)
        flac[f"{name}.flac"] = (run_dir.parent / f"{name}.flac").read_bytes()
    key = "f00dfeedf00dfeed-face0-00000000"
    members = {"json": json.dumps({"key": key}).encode(), **flac}
    ledger = Ledger(run_dir)
    with tarfile.open(ledger.shards_dir / "000000.tar", "w") as tar:
        for ext, data in members.items():
            info = tarfile.TarInfo(f"{key}.{ext}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    clip = clip_row_type(ShotRecord)(source_uri="/in/f.mp4", source_id="f00dfeedf00dfeed", key=key, shot_index=0,
                                     shard="000000.tar")
    source = SourceManifestRow(source_uri="/in/f.mp4", source_id="f00dfeedf00dfeed")
    ledger.commit(0, [source], [clip], clip_row_type(ShotRecord), shards=["000000.tar"])
    consolidate(run_dir)
    return run_dir


def test_tracks_that_sum_to_the_mix_verify(tmp_path):
    report = verify_run(fabricated_run(tmp_path / "run"))
    assert report.ok, report.problems
    assert report.mixes == 1


def test_a_track_that_does_not_sum_to_the_mix_is_caught(tmp_path):
    report = verify_run(fabricated_run(tmp_path / "run", other_delta=1))
    assert [p.format() for p in report.problems] == [
        "000000.tar f00dfeedf00dfeed-face0-00000000: self + other + background != mix at 1 of 3200 samples "
        "(first at 1234)"
    ]


# ---------------------------------------------------------------- shard rewrites keep the ledger consistent


def test_the_splits_pass_records_its_assignment_and_leaves_every_shard_as_it_is(run_dir):
    manifests = run_dir / "manifests"
    clips = pq.read_table(manifests / "clips.parquet")
    # The columns of the talk stage's clips that the pass reads.
    for column in ("identity_id", "split"):
        clips = clips.append_column(column, pa.array([""] * clips.num_rows))
    clips = clips.append_column("clip_start_s", clips.column("start_s")).append_column("clip_end_s", clips.column("end_s"))
    pq.write_table(clips, manifests / "clips.parquet")
    kept = sorted(ok_clips(run_dir))
    pq.write_table(pa.table({"key": kept, "identity_id": [f"face-{i % 3}" for i in range(len(kept))]}),
                   manifests / "identities.parquet")
    before = shard_records(run_dir)
    files = {p.name: sha256_file(p) for p in (run_dir / "shards").glob("*.tar")}
    assert write_splits(run_dir, 0.2, 0.2) is not None
    # Shards untouched (format 2: the labels are in the manifests), the assignment committed.
    assert shard_records(run_dir) == before
    assert {p.name: sha256_file(p) for p in (run_dir / "shards").glob("*.tar")} == files
    assert integrity.committed_splits(run_dir) is not None
    parts = sorted(p.name for p in (manifests / "_ledger").glob("*-splits.parquet"))
    assert len(parts) == 1
    index = {r["key"]: r for r in pq.read_table(manifests / "samples.parquet").to_pylist()}
    assert (index[kept[0]]["identity_id"], index[kept[0]]["split"]) == ("face-0", ok_clips(run_dir)[kept[0]]["split"])
    assert {r["split"] for r in index.values()} == {"train", "val", "test"}
    report = verify_run(run_dir)
    assert report.ok, report.problems
    # Idempotent: the same assignment is not committed again.
    assert write_splits(run_dir, 0.2, 0.2) is not None
    assert sorted(p.name for p in (manifests / "_ledger").glob("*-splits.parquet")) == parts
    # The index disagreeing with the manifests (which the loader would trust) is reported.
    table = pq.read_table(manifests / "samples.parquet")
    splits = ["val" if k == kept[0] and s != "val" else ("test" if k == kept[0] else s)
              for k, s in zip(table.column("key").to_pylist(), table.column("split").to_pylist())]
    pq.write_table(table.set_column(table.schema.get_field_index("split"), "split", pa.array(splits)),
                   manifests / "samples.parquet")
    assert any("split/identity" in p.what and p.key == kept[0] for p in verify_run(run_dir).problems)


def _stage_changed_json(run_dir: Path) -> ShardRewrite:
    rewrite = ShardRewrite(run_dir, cause="test")
    key = next(k for k, s in samples(run_dir).items() if s == "000000.tar")
    with tarfile.open(run_dir / "shards" / "000000.tar") as tar, tarfile.open(rewrite.stage("000000.tar"), "w") as out:
        copy_members(tar, out, replace={f"{key}.json": json.dumps({"key": key, "changed": True}).encode()})
    return rewrite


def test_a_rewrite_killed_before_its_commit_record_leaves_the_old_shard(run_dir):
    old = sha256_file(run_dir / "shards" / "000000.tar")
    _stage_changed_json(run_dir)  # killed before commit(): the staged file stays behind
    assert any("interrupted shard rewrite" in p.what for p in verify_run(run_dir).problems)
    Ledger(run_dir).recover()
    assert sha256_file(run_dir / "shards" / "000000.tar") == old
    assert verify_run(run_dir).ok


def test_a_rewrite_killed_after_its_commit_record_is_rolled_forward(run_dir, monkeypatch):
    rewrite = _stage_changed_json(run_dir)
    monkeypatch.setattr(integrity, "complete_rewrites", lambda run_dir: None)  # killed before the renames
    seq = rewrite.commit()
    monkeypatch.undo()
    problems = verify_run(run_dir).problems
    assert any(p.shard == "000000.tar" and "sha256" in p.what for p in problems)
    Ledger(run_dir).recover()
    assert shard_records(run_dir)["000000.tar"].commit == seq
    assert verify_run(run_dir).ok


# ---------------------------------------------------------------- takedown


def test_takedown_by_key_and_source_id_sticks_across_a_resume(videos, reference, tmp_path, capsys):
    run_dir = tmp_path / "fresh"
    run(videos, run_dir)  # not a copy: its manifests point at its own work area
    before = samples(run_dir)
    rows = ok_clips(run_dir)
    by_shard: dict[str, list[str]] = {}
    for key, shard in before.items():
        by_shard.setdefault(shard, []).append(key)
    source_id = rows[next(iter(before))]["source_id"]
    # A key of another source that shares its shard with a sample that stays: that shard is rewritten.
    key = next(k for keys in by_shard.values() if len(keys) > 1 for k in keys if not k.startswith(source_id))
    code = main(["takedown", str(run_dir), "--key", key, "--source-id", source_id, "--reason", "request 17"])
    out = capsys.readouterr().out
    gone = {key} | {k for k in before if k.startswith(f"{source_id}-")}
    assert code == 0 and f"took down {len(gone)} sample key(s)" in out
    changed = [r for r in shard_records(run_dir).values() if r.cause == "takedown"]
    assert sorted(r.removed for r in changed) == [False, True]  # key's shard rewritten, the source's removed
    partner = next(k for k in by_shard[before[key]] if k != key)
    assert not Path(rows[key]["segment_video_uri"]).exists() and Path(rows[partner]["segment_video_uri"]).exists()

    def check(work_gone: bool = True) -> None:
        assert set(samples(run_dir)) == set(before) - gone
        assert not gone & set(ok_clips(run_dir))
        assert not gone & set(pq.read_table(run_dir / "manifests" / "clips.parquet").column("key").to_pylist())
        listed = pq.read_table(run_dir / "manifests" / "takedowns.parquet").to_pylist()
        assert {r["key"] for r in listed} == gone and {r["reason"] for r in listed} == {"request 17"}
        assert {r["selector"] for r in listed} == {f"key={key}", f"source_id={source_id}"}
        sources = {r["source_uri"]: r for r in pq.read_table(run_dir / "manifests" / "sources.parquet").to_pylist()}
        original = next(r for r in sources.values() if r["source_id"] == source_id and r["status"] == "ok")
        assert original["n_clips_ok"] == 0 and original["clip_seconds"] == 0
        assert (run_dir / "work" / source_id).exists() != work_gone
        report = verify_run(run_dir)
        assert report.ok, report.problems
        assert report.takedowns == len(gone)

    check()
    summary = run(videos, run_dir)  # resume with the same inputs
    assert summary.skipped == summary.inputs == 3
    check()
    # The taken-down video under another name is the same content: filtered, its samples stay out.
    uri = next(r["source_uri"] for r in takedown_records(run_dir).to_pylist() if r["source_id"] == source_id)
    renamed = tmp_path / "renamed"
    renamed.mkdir()
    shutil.copy(uri, renamed / "copy.mp4")
    run_pipeline(load_config(None, [f"inputs=[{renamed}]", f"run_dir={run_dir}", *SETTINGS]), show_progress=False)
    copy = next(r for r in pq.read_table(run_dir / "manifests" / "sources.parquet").to_pylist()
                if r["source_uri"].endswith("copy.mp4"))
    assert (copy["status"], copy["reason"]) == ("filtered", "duplicate_content")
    check(work_gone=False)  # ingest made the copy's work files before the sink filtered it
    again = takedown(run_dir, source_ids=[source_id])
    assert again.already == [f"source_id={source_id}"] and again.work_files_removed > 0
    check()

    # Putting a taken-down sample back is caught.
    shutil.copy(reference / "shards" / before[key], run_dir / "shards" / before[key])
    whats = [p.what for p in verify_run(run_dir).problems if p.key == key]
    assert any(w.startswith("taken down (commit ") and w.endswith("still in the shard") for w in whats)


def test_a_resume_after_a_takedown_does_not_reuse_a_removed_shard_name(videos, run_dir, tmp_path):
    last = max(p.name for p in (run_dir / "shards").glob("*.tar"))
    keys = [k for k, s in samples(run_dir).items() if s == last]
    result = takedown(run_dir, keys=keys)
    assert result.shards_removed == [last] and not (run_dir / "shards" / last).exists()
    extra = tmp_path / "more"
    make_video(extra / "video9.mp4", seconds=3.0, cuts=2, size="176x144")
    config = load_config(None, [f"inputs=[{videos}, {extra}]", f"run_dir={run_dir}", *SETTINGS])
    assert run_pipeline(config, show_progress=False).skipped == 3
    new_shards = sorted(p.name for p in (run_dir / "shards").glob("*.tar"))
    assert last not in new_shards and max(new_shards) > last
    assert not set(keys) & set(samples(run_dir))
    assert verify_run(run_dir).ok


def test_takedown_by_identity_and_keys_file(run_dir, tmp_path):
    kept = sorted(ok_clips(run_dir))
    pq.write_table(pa.table({"key": kept[:2], "source_id": [k.split("-")[0] for k in kept[:2]],
                             "identity_id": ["face-7", "face-7"]}), run_dir / "manifests" / "identities.parquet")
    listed = tmp_path / "keys.txt"
    listed.write_text(f"# from the request\n{kept[2]}\n\n")
    assert main(["takedown", str(run_dir), "--identity", "face-7", "--keys-file", str(listed)]) == 0
    assert not set(kept[:3]) & set(samples(run_dir))
    assert pq.read_table(run_dir / "manifests" / "identities.parquet").num_rows == 0
    assert {r["identity_id"] for r in takedown_records(run_dir).to_pylist() if r["key"] in kept[:2]} == {"face-7"}
    assert verify_run(run_dir).ok
    again = takedown(run_dir, identities=["face-7"])  # already done: nothing changes, no error
    assert again.removed == [] and again.already == ["identity=face-7"]


def test_a_takedown_that_matches_nothing_changes_nothing(run_dir, capsys):
    parts = sorted(p.name for p in (run_dir / "manifests" / "_ledger").iterdir())
    assert main(["takedown", str(run_dir), "--key", "no-such-key"]) == 2
    assert "no sample matches key=no-such-key" in capsys.readouterr().err
    assert sorted(p.name for p in (run_dir / "manifests" / "_ledger").iterdir()) == parts
    with pytest.raises(TakedownError):
        takedown(run_dir, source_ids=["0123456789abcdef"])


def test_a_takedown_needs_a_run_directory_and_its_lock(run_dir, tmp_path):
    from voxhear.pipeline.runlock import RunLock, RunLockedError

    with pytest.raises(TakedownError, match="not a run directory"):
        takedown(tmp_path / "nowhere", keys=["k"])
    assert not (tmp_path / "nowhere").exists()
    with RunLock(run_dir), pytest.raises(RunLockedError):  # a run is writing to it
        takedown(run_dir, keys=[next(iter(samples(run_dir)))])
