"""DatasetSink with fake final rows: completion by shares, manifests, shards and ledger, resume.

No Ray, no models, no real media: the rows' segment files are a few bytes each.
"""

from __future__ import annotations

import json
import random
import tarfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from voxhear.manifests import Ledger, consolidate
from voxhear.pipeline import runner
from voxhear.pipeline.config import load_config
from voxhear.pipeline.records import ShotRecord, SourceRecord, sample_key
from voxhear.pipeline.sink import DatasetSink, RunAbortedError


@pytest.fixture(autouse=True)
def shot_stages_only(monkeypatch):
    """Register only the shot stages: reading every stage module would import torch (seconds)."""
    from voxhear.pipeline import registry

    shot_modules = tuple(f"voxhear.stages.{name}:" for name in ("ingest", "scene_cut", "shot_media"))
    monkeypatch.setattr(registry, "STAGES", tuple(e for e in registry.STAGES if e.startswith(shot_modules)))


def make_config(*overrides: str):
    return load_config(None, ["runner=local", "stages=[ingest, scene_cut, shot_media]", *overrides])


class Media:
    """Writes the tiny segment files a kept row's shard members are read from."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def row(self, uri: str, index: int, den: int, status: str = "ok", stage: str = "", reason: str = "",
            part: str = "", seconds: float = 1.0, wall: float = 0.0) -> ShotRecord:
        """One final row of source `uri`, worth 1/den of it; index -1 is a source-level row."""
        source_id = Path(uri).stem
        key = sample_key(source_id, index * 1000, part or None) if index >= 0 else ""
        row = ShotRecord(source_uri=uri, source_id=source_id, shot_index=index, key=key, share_den=den,
                         start_s=float(index), end_s=index + seconds, duration_s=10.0,
                         wall_s={"ingest": wall} if wall else {}, cpu_s={"ingest": wall / 2} if wall else {})
        if index >= 0:
            video, audio = self.folder / f"{key}.mp4", self.folder / f"{key}.flac"
            video.write_bytes(b"mp4:" + key.encode())
            audio.write_bytes(b"flac:" + key.encode())
            row.segment_video_uri, row.segment_audio_uri = str(video), str(audio)
        if status != "ok":
            row.mark(status, stage, reason, "InputError" if status == "failed" else "", f"{reason} happened")
        return row


@pytest.fixture
def media(tmp_path):
    return Media(tmp_path / "media")


@pytest.fixture
def run_dir(tmp_path):
    return tmp_path / "run"


def make_sink(run_dir: Path, config, total: int = 0) -> DatasetSink:
    ledger = Ledger(run_dir)
    return DatasetSink(config, ledger, ledger.recover(), final_type=ShotRecord, total_sources=total,
                       show_progress=False)


def manifests(run_dir: Path) -> tuple[dict[str, dict], dict[str, dict]]:
    sources, clips = consolidate(run_dir)
    return ({r["source_uri"]: r for r in sources.to_pylist()},
            {(r["source_uri"], r["key"]): r for r in clips.to_pylist()})


def shard_members(run_dir: Path) -> dict[str, dict[str, bytes]]:
    """shard name -> {member name: bytes}, for the published shards."""
    out = {}
    for path in sorted((run_dir / "shards").glob("*.tar")):
        with tarfile.open(path) as tar:
            out[path.name] = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
    return out


def ledger_parts(run_dir: Path, kinds: tuple[str, ...] = ("clips", "sources")) -> list[str]:
    """The ledger's parts of `kinds` (a commit that publishes shards also has a shards part)."""
    return sorted(p.name for p in (run_dir / "manifests" / "_ledger").iterdir()
                  if p.name.removesuffix(".parquet").partition("-")[2] in kinds)


# ---------------------------------------------------------------- completion by shares


def two_sources(media: Media) -> dict[str, list[ShotRecord]]:
    """a.mp4: shares 1/2 + 1/4 + 1/4 (a shot split in two); b.mp4: three thirds."""
    return {
        "/in/a.mp4": [media.row("/in/a.mp4", 0, 2), media.row("/in/a.mp4", 1, 4, part="p0"),
                      media.row("/in/a.mp4", 1, 4, part="p1")],
        "/in/b.mp4": [media.row("/in/b.mp4", i, 3) for i in range(3)],
    }


@pytest.mark.parametrize("seed", range(6))
def test_a_source_completes_exactly_once_when_its_last_share_arrives(media, run_dir, seed):
    by_source = two_sources(media)
    rows = [r for rs in by_source.values() for r in rs]
    random.Random(seed).shuffle(rows)
    sink = make_sink(run_dir, make_config(), total=2)
    completions = []
    sink._complete = lambda done, real=sink._complete: (completions.append(done[0].source_uri), real(done))
    seen: dict[str, int] = {}
    for row in rows:
        sink.consume([row])
        seen[row.source_uri] = seen.get(row.source_uri, 0) + 1
        complete = {uri for uri, n in seen.items() if n == len(by_source[uri])}
        assert set(completions) == complete and len(completions) == len(complete)
        assert set(sink.incomplete) == set(seen) - complete
    sink.finish()
    assert sorted(completions) == ["/in/a.mp4", "/in/b.mp4"] and sink.completed == 2
    sources, clips = manifests(run_dir)
    assert sorted(sources) == ["/in/a.mp4", "/in/b.mp4"]
    assert len(clips) == 6 and all(c["shard"] == "000000.tar" for c in clips.values())


@pytest.mark.parametrize("seed", range(4))
def test_rows_in_any_order_across_batches(media, run_dir, seed):
    rows = [r for rs in two_sources(media).values() for r in rs]
    rng = random.Random(seed)
    rng.shuffle(rows)
    sink = make_sink(run_dir, make_config())
    while rows:
        size = rng.randint(1, 3)
        sink.consume(rows[:size])
        rows = rows[size:]
    sink.finish()
    sources, clips = manifests(run_dir)
    assert {uri: s["n_shots"] for uri, s in sources.items()} == {"/in/a.mp4": 3, "/in/b.mp4": 3}
    assert {uri: s["status"] for uri, s in sources.items()} == {"/in/a.mp4": "ok", "/in/b.mp4": "ok"}
    samples = shard_members(run_dir)["000000.tar"]
    assert sorted(n for n in samples if n.endswith(".json")) == sorted(f"{k}.json" for _, k in clips)


def test_more_than_a_whole_source_is_refused(media, run_dir):
    sink = make_sink(run_dir, make_config())
    sink.consume([media.row("/in/a.mp4", 0, 2)])
    with pytest.raises(RuntimeError, match="received more than its rows"):
        sink.consume([media.row("/in/a.mp4", 1, 1)])


def test_finish_refuses_a_source_that_never_completed(media, run_dir):
    sink = make_sink(run_dir, make_config())
    sink.consume([media.row("/in/a.mp4", 0, 3), media.row("/in/a.mp4", 1, 3), media.row("/in/b.mp4", 0, 1)])
    with pytest.raises(RuntimeError, match=r"1 sources never completed: \['/in/a.mp4'\]"):
        sink.finish()
    # What did complete was still committed before the error.
    sources, _ = manifests(run_dir)
    assert list(sources) == ["/in/b.mp4"]


# ---------------------------------------------------------------- filtered and failed rows


def test_filtered_and_failed_rows_become_manifest_rows_with_reasons(media, run_dir):
    sink = make_sink(run_dir, make_config())
    sink.consume([
        # a: one kept shot, one rejected by a stage.
        media.row("/in/a.mp4", 0, 2, wall=1.0, seconds=1.5),
        media.row("/in/a.mp4", 1, 2, "filtered", "scene_cut", "shot_too_short", wall=1.0, seconds=0.3),
        # f: broken before the scene cut (one source-level row).
        media.row("/in/f.mp4", -1, 1, "failed", "ingest", "decode_failed"),
        # n: filtered before the scene cut.
        media.row("/in/n.mp4", -1, 1, "filtered", "ingest", "no_audio_stream"),
        # r: every shot rejected.
        media.row("/in/r.mp4", 0, 3, "filtered", "talk", "too_dark"),
        media.row("/in/r.mp4", 1, 3, "filtered", "scene_cut", "shot_too_short"),
        media.row("/in/r.mp4", 2, 3, "filtered", "talk", "too_dark"),
    ])
    sink.finish()
    assert sink.completed == 4 and sink.failed == 1
    sources, clips = manifests(run_dir)

    a, f, n, r = (sources[f"/in/{x}.mp4"] for x in "afnr")
    assert (a["status"], a["stage"], a["reason"]) == ("ok", "", "")
    assert (a["n_shots"], a["n_clips_ok"], a["n_clips_filtered"]) == (2, 1, 1)
    assert a["clip_seconds"] == pytest.approx(1.5)
    assert a["wall_s"] == [("ingest", 2.0)] and a["total_wall_s"] == pytest.approx(2.0)
    assert a["total_cpu_s"] == pytest.approx(1.0)
    assert (f["status"], f["stage"], f["reason"]) == ("failed", "ingest", "decode_failed")
    assert f["error_type"] == "InputError"
    assert f["error_message"] == "decode_failed happened" and f["n_shots"] == 0
    assert (n["status"], n["stage"], n["reason"]) == ("filtered", "ingest", "no_audio_stream")
    assert (r["status"], r["stage"], r["reason"]) == ("filtered", "sink", "no_clip_kept")
    assert r["error_message"] == "every clip was rejected: too_dark x2, shot_too_short x1"
    assert (r["n_shots"], r["n_clips_ok"], r["n_clips_filtered"]) == (3, 0, 3)

    # Clip rows: every shot, kept or not; source-level rows have none.
    assert {uri for uri, _ in clips} == {"/in/a.mp4", "/in/r.mp4"} and len(clips) == 5
    kept = [c for c in clips.values() if c["status"] == "ok"]
    assert [c["key"] for c in kept] == ["a-00000000"] and kept[0]["shard"] == "000000.tar"
    rejected = {c["key"]: (c["status"], c["stage"], c["reason"], c["shard"]) for c in clips.values()
                if c["status"] != "ok"}
    assert rejected == {
        "a-00001000": ("filtered", "scene_cut", "shot_too_short", ""),
        "r-00000000": ("filtered", "talk", "too_dark", ""),
        "r-00001000": ("filtered", "scene_cut", "shot_too_short", ""),
        "r-00002000": ("filtered", "talk", "too_dark", ""),
    }
    # Only kept clips reach the shards.
    assert set(shard_members(run_dir)["000000.tar"]) == {"a-00000000.mp4", "a-00000000.flac", "a-00000000.json"}


def test_too_many_failures_abort_after_committing(media, run_dir):
    sink = make_sink(run_dir, make_config("max_failure_rate=0.5", "min_inputs_for_failure_rate=3"))
    sink.consume([media.row("/in/a.mp4", 0, 1), media.row("/in/b.mp4", -1, 1, "failed", "ingest", "truncated")])
    with pytest.raises(RunAbortedError, match="2 of 3 inputs failed"):
        sink.consume([media.row("/in/c.mp4", -1, 1, "failed", "ingest", "truncated")])
    sources, clips = manifests(run_dir)
    assert {uri: s["status"] for uri, s in sources.items()} == {"/in/a.mp4": "ok", "/in/b.mp4": "failed",
                                                                "/in/c.mp4": "failed"}
    assert [c["shard"] for c in clips.values()] == ["000000.tar"]


def test_same_content_under_another_uri_is_filtered_as_duplicate(media, run_dir, tmp_path):
    sink = make_sink(run_dir, make_config())
    sink.consume([media.row("/in/a.mp4", 0, 1)])
    copy = media.row("/in/a.mp4", 0, 1)
    copy.source_uri = "/other/a.mp4"  # same source_id (content hash), other path
    sink.consume([copy])
    sink.finish()
    sources, clips = manifests(run_dir)
    dup = sources["/other/a.mp4"]
    assert (dup["status"], dup["stage"], dup["reason"]) == ("filtered", "sink", "duplicate_content")
    assert "as /in/a.mp4" in dup["error_message"] and dup["n_clips_ok"] == 0 and dup["n_clips_filtered"] == 1
    assert clips[("/other/a.mp4", "a-00000000")]["reason"] == "duplicate_content"
    assert clips[("/other/a.mp4", "a-00000000")]["shard"] == ""
    assert list(shard_members(run_dir)["000000.tar"]).count("a-00000000.json") == 1


# ---------------------------------------------------------------- shards and the ledger


def test_shards_are_written_and_committed_at_source_boundaries(media, run_dir):
    sink = make_sink(run_dir, make_config("shards.max_samples=2"))
    a = [media.row("/in/a.mp4", i, 3) for i in range(3)]
    sink.consume(a)
    # Shard 0 (a's first two clips) is published and its clips committed; a itself waits for shard 1.
    assert sorted(p.name for p in (run_dir / "shards").glob("*.tar")) == ["000000.tar"]
    assert ledger_parts(run_dir) == ["000000-clips.parquet", "000000-sources.parquet"]
    part = run_dir / "manifests" / "_ledger"
    assert pq.read_table(part / "000000-sources.parquet").num_rows == 0
    assert pq.read_table(part / "000000-clips.parquet").column("key").to_pylist() == ["a-00000000", "a-00001000"]
    # (Never recover() a live run directory: it deletes the open shard's temp file.)

    sink.consume([media.row("/in/b.mp4", 0, 1)])  # fills shard 1, which a and b then both finish in
    assert ledger_parts(run_dir)[-2:] == ["000001-clips.parquet", "000001-sources.parquet"]
    committed = pq.read_table(part / "000001-sources.parquet").to_pylist()
    assert [(r["source_uri"], r["commit"]) for r in committed] == [("/in/a.mp4", 1), ("/in/b.mp4", 1)]
    sink.finish()
    assert len(ledger_parts(run_dir)) == 4  # nothing left to commit at the end

    shards = shard_members(run_dir)
    assert list(shards) == ["000000.tar", "000001.tar"]
    assert list(shards["000000.tar"]) == ["a-00000000.json", "a-00000000.mp4", "a-00000000.flac",
                                          "a-00001000.json", "a-00001000.mp4", "a-00001000.flac"]
    assert shards["000001.tar"]["b-00000000.mp4"] == b"mp4:b-00000000"
    assert shards["000001.tar"]["a-00002000.flac"] == b"flac:a-00002000"
    meta = json.loads(shards["000000.tar"]["a-00001000.json"])
    assert (meta["key"], meta["source_uri"], meta["shot_index"]) == ("a-00001000", "/in/a.mp4", 1)
    sources, clips = manifests(run_dir)
    assert {k: c["shard"] for (_, k), c in clips.items()} == {"a-00000000": "000000.tar", "a-00001000": "000000.tar",
                                                              "a-00002000": "000001.tar", "b-00000000": "000001.tar"}
    assert {uri: s["commit"] for uri, s in sources.items()} == {"/in/a.mp4": 1, "/in/b.mp4": 1}
    assert [p.name for p in (run_dir / "shards").iterdir() if not p.name.endswith(".tar")] == []


def test_a_due_commit_closes_the_open_shard(media, run_dir):
    sink = make_sink(run_dir, make_config("shards.commit_every_s=0.000001"))
    sink.consume([media.row("/in/a.mp4", 0, 1)])
    sink.consume([media.row("/in/b.mp4", 0, 1)])
    assert sorted(p.name for p in (run_dir / "shards").glob("*.tar")) == ["000000.tar", "000001.tar"]
    assert len(ledger_parts(run_dir)) == 4
    sink.finish()


def test_without_a_due_commit_samples_share_a_shard_until_finish(media, run_dir):
    sink = make_sink(run_dir, make_config())
    sink.consume([media.row("/in/a.mp4", 0, 1)])
    sink.consume([media.row("/in/b.mp4", 0, 1)])
    assert list((run_dir / "shards").glob("*.tar")) == [] and ledger_parts(run_dir) == []
    sink.finish()
    assert list(shard_members(run_dir)) == ["000000.tar"] and len(ledger_parts(run_dir)) == 2


# ---------------------------------------------------------------- resume


def test_recovered_state_lists_committed_sources_and_continues_numbering(media, run_dir):
    sink = make_sink(run_dir, make_config("shards.max_samples=1"))
    sink.consume([media.row("/in/a.mp4", 0, 2), media.row("/in/a.mp4", 1, 2),
                  media.row("/in/f.mp4", -1, 1, "failed", "ingest", "truncated")])
    sink.finish()
    state = Ledger(run_dir).recover()
    assert state.status_by_uri == {"/in/a.mp4": "ok", "/in/f.mp4": "failed"}
    assert state.source_ids == {"a": "/in/a.mp4"}
    assert state.published_keys == {"a-00000000", "a-00001000"}
    assert (state.next_shard, state.next_commit) == (2, sink.commit_seq)

    again = make_sink(run_dir, make_config("shards.max_samples=1"))
    again.consume([media.row("/in/c.mp4", 0, 1)])
    again.finish()
    assert list(shard_members(run_dir)) == ["000000.tar", "000001.tar", "000002.tar"]
    sources, clips = manifests(run_dir)
    assert sorted(sources) == ["/in/a.mp4", "/in/c.mp4", "/in/f.mp4"]
    assert clips[("/in/c.mp4", "c-00000000")]["shard"] == "000002.tar"


def test_a_source_killed_between_its_shards_is_not_written_twice(media, run_dir):
    rows = lambda: [media.row("/in/a.mp4", i, 3) for i in range(3)]  # noqa: E731
    first = make_sink(run_dir, make_config("shards.max_samples=2"))
    first.consume(rows())  # shard 0 committed with two of a's clips; the third sits in an open shard
    del first  # killed: no finish

    state = Ledger(run_dir).recover()
    assert state.status_by_uri == {} and state.published_keys == {"a-00000000", "a-00001000"}
    assert [p.name for p in (run_dir / "shards").iterdir()] == ["000000.tar"]  # the temp shard is gone

    second = make_sink(run_dir, make_config("shards.max_samples=2"))
    second.consume(rows())
    second.finish()
    shards = shard_members(run_dir)
    keys = [n[: -len(".json")] for members in shards.values() for n in members if n.endswith(".json")]
    assert sorted(keys) == ["a-00000000", "a-00001000", "a-00002000"]  # each once
    sources, clips = manifests(run_dir)
    assert sources["/in/a.mp4"]["status"] == "ok" and sources["/in/a.mp4"]["n_clips_ok"] == 3
    assert {k: c["shard"] for (_, k), c in clips.items()} == {"a-00000000": "000000.tar", "a-00001000": "000000.tar",
                                                              "a-00002000": "000001.tar"}


class ScriptedExecutor:
    """Stands in for the executors: turns each input into scripted final rows and feeds the sink."""

    def __init__(self, media: Media, outcomes: dict[str, str]) -> None:
        self.media, self.outcomes = media, outcomes
        self.given: list[list[str]] = []

    def shard_writer(self, writer):
        return writer

    def execute(self, stages, rows, sink) -> None:
        self.given.append([r.source_uri for r in rows])
        assert all(type(r) is SourceRecord for r in rows)
        for row in rows:
            if self.outcomes[row.source_uri] == "ok":
                sink.consume([self.media.row(row.source_uri, i, 2) for i in range(2)])
            else:
                sink.consume([self.media.row(row.source_uri, -1, 1, "failed", "ingest", "truncated")])


def test_a_rerun_skips_committed_sources_and_retries_failed_ones_on_request(media, tmp_path, monkeypatch):
    inputs = [str(tmp_path / "in" / f"{name}.mp4") for name in ("a", "b", "f")]
    outcomes = {inputs[0]: "ok", inputs[1]: "ok", inputs[2]: "failed"}

    class Final:
        output_type = ShotRecord

    monkeypatch.setattr(runner, "build_stages", lambda config, context: [Final()])
    executors = []

    def make(runner_name, ray_config, show_progress=True):
        executors.append(ScriptedExecutor(media, outcomes))
        return executors[-1]

    monkeypatch.setattr(runner, "make_executor", make)

    def run(*extra):
        listed = "[" + ",".join(inputs) + "]"
        return runner.run_pipeline(make_config(f"inputs={listed}", f"run_dir={tmp_path / 'run'}", *extra),
                                   show_progress=False)

    first = run()
    assert executors[0].given == [inputs] and first.skipped == 0
    assert first.status_counts == {"ok": 2, "failed": 1} and first.clips == 4

    second = run()
    assert executors[1].given == [[]] and second.skipped == 3
    assert second.status_counts == {"ok": 2, "failed": 1}

    outcomes[inputs[2]] = "ok"  # the failure was transient
    third = run("retry_failed=true")
    assert executors[2].given == [[inputs[2]]] and third.skipped == 2
    assert third.status_counts == {"ok": 3} and third.clips == 6
    sources = pq.read_table(tmp_path / "run" / "manifests" / "sources.parquet").to_pylist()
    assert [(Path(s["source_uri"]).name, s["status"]) for s in sources] == [("a.mp4", "ok"), ("b.mp4", "ok"),
                                                                           ("f.mp4", "ok")]


def test_a_sources_clip_seconds_count_each_clip_window_once():
    """Ten 22 s clip windows of one 220 s track of a 240 s shot: 220 s, not 10 x 240 (the shot's span
    on every window's row), in sources.parquet as in the run summary."""
    from voxhear.pipeline.records import ClipRecord
    from voxhear.pipeline.sink import summarize_source

    rows = [
        ClipRecord(source_uri="a.mp4", source_id="s", share_den=10, shot_index=0, start_s=0.0, end_s=240.0,
                   track_index=0, track_start_s=10.0, track_end_s=230.0, clip_index=i,
                   clip_start_s=10.0 + 22 * i, clip_end_s=32.0 + 22 * i, key=f"s-{i}")
        for i in range(10)
    ]
    source = summarize_source(rows)
    assert source.n_clips_ok == 10 and source.clip_seconds == pytest.approx(220.0)
