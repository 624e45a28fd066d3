"""Prove a run: shards match the ledger, samples decode, audio sums, manifests and shards agree.

`verify_run(run_dir)` checks, and `voxhear verify RUN` prints one line per problem:

- every shard file against the sha256 the ledger recorded for it last (a shard on disk that the
  ledger does not know, one it records but that is missing, one it records as removed);
- every sample: tar members readable and the archive intact to its end, `json` members parse
  (and name their own key), FLAC members decode (soundfile), `npz` members load (numpy), `mp4`
  members open and decode a first frame (OpenCV);
- where a sample has `mix`, `self`, `other` and `background` FLAC tracks: self + other +
  background == mix exactly, on the integers (read as int32);
- every `clips.parquet` row with status ok has its sample in the shard it names, every sample in a
  shard has one ok row naming that shard, and no key is in the shards twice;
- no taken-down key is in a shard or in clips/identities/splits.parquet;
- where clips.parquet has identities and splits (talk runs), clips.parquet, splits.parquet and
  identities.parquet agree on every kept sample's identity and split (they disagree only after an
  end-of-run pass was interrupted; the next `voxhear run` completes it). The samples' json does
  not carry these labels (shard format 2; a format-1 json's are stale after a resume and unread);
- the sample index (manifests/samples.parquet, where a run has one) gives every sample of every
  shard, at the byte span it has there, and its split and identity as clips.parquet has them.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import sys
import tarfile
import tempfile
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from voxhear.manifests.integrity import TAKEDOWNS_FILE, ShardRecord, ledger_dir_of, shard_records, takedown_records
from voxhear.manifests.sample_index import INDEX_FILE, kept_labels, sample_spans
from voxhear.pipeline.io import sha256_file

_SHARD = re.compile(r"^\d{6}\.tar$")
TRACKS = ("mix", "self", "other", "background")
_Add = Callable[[str, str], None]  # report a problem: (key, what)


@dataclass(frozen=True)
class Problem:
    shard: str
    key: str
    what: str

    def format(self) -> str:
        where = " ".join(part for part in (self.shard, self.key) if part) or "run"
        return f"{where}: {self.what}"


@dataclass
class VerifyReport:
    run_dir: Path
    problems: list[Problem] = field(default_factory=list)
    shards: int = 0
    samples: int = 0
    members: int = 0
    bytes: int = 0
    mixes: int = 0  # samples whose four audio tracks were summed
    manifest_rows: int = 0  # ok rows of clips.parquet
    takedowns: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, shard: str, key: str, what: str) -> None:
        self.problems.append(Problem(shard, key, what))

    def summary(self) -> str:
        counts = (
            f"{self.shards} shards ({self.bytes / 1e6:.1f} MB), {self.samples} samples, {self.members} members, "
            f"{self.mixes} mixes summed, {self.manifest_rows} ok manifest rows, {self.takedowns} takedowns"
        )
        if self.ok:
            return f"verified {self.run_dir}: {counts}; no problem"
        return f"{len(self.problems)} problem(s) in {self.run_dir}: {counts}"


@dataclass
class _ShardResult:
    name: str
    keys: list[str] = field(default_factory=list)  # in order, a key twice if it is twice
    problems: list[Problem] = field(default_factory=list)
    members: int = 0
    bytes: int = 0
    mixes: int = 0


def verify_run(run_dir: Path, decode: bool = True, jobs: int | None = None) -> VerifyReport:
    """Check a run directory (see the module docstring); `decode=False` skips opening the media."""
    run_dir = Path(run_dir)
    report = VerifyReport(run_dir=run_dir)
    shards_dir = run_dir / "shards"
    if not ledger_dir_of(run_dir).is_dir():
        report.add("", "", "no ledger (manifests/_ledger): not a run directory, or made before it had one")
        return report
    records = shard_records(run_dir)
    on_disk = {p.name for p in shards_dir.iterdir() if _SHARD.match(p.name)} if shards_dir.is_dir() else set()
    if shards_dir.is_dir():
        for path in sorted(shards_dir.glob(".*.staged")):
            report.add(
                "", "", f"interrupted shard rewrite ({path.name}): the next `voxhear run` or takedown completes it"
            )
    names = sorted(on_disk | {name for name, record in records.items() if not record.removed})
    jobs = jobs or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        results = list(pool.map(lambda n: _check_shard(shards_dir / n, records.get(n), n in on_disk, decode), names))
    where: dict[str, list[str]] = defaultdict(list)  # key -> shards holding it
    for result in results:
        report.problems += result.problems
        report.members += result.members
        report.bytes += result.bytes
        report.mixes += result.mixes
        report.shards += result.name in on_disk
        report.samples += len(result.keys)
        for key in result.keys:
            where[key].append(result.name)
    for key, shards in sorted(where.items()):
        if len(shards) > 1:
            report.add(
                shards[-1], key, f"sample is in the shards {len(shards)} times ({', '.join(sorted(set(shards)))})"
            )
    _check_manifests(run_dir, report, where)
    _check_takedowns(run_dir, report, where)
    _check_labels(run_dir, report)
    _check_sample_index(run_dir, report, sorted(on_disk))
    return report


def _check_sample_index(run_dir: Path, report: VerifyReport, shards: list[str]) -> None:
    """The index against the shards; shards with problems of their own (damaged, unknown) are left
    to those reports."""
    path = run_dir / "manifests" / INDEX_FILE
    if not path.is_file():
        return
    indexed: dict[str, dict[str, tuple[int, int, tuple[str, str]]]] = defaultdict(dict)
    columns = ["key", "shard", "offset", "length", "split", "identity_id"]
    for row in pq.read_table(path, columns=columns).to_pylist():
        indexed[row["shard"]][row["key"]] = (row["offset"], row["length"], (row["split"], row["identity_id"]))
    # The loader takes each sample's split and identity from the index: they must be the manifests'.
    labels = kept_labels(run_dir / "manifests" / "clips.parquet")
    troubled = {problem.shard for problem in report.problems}
    stale = "; `voxhear verify --reindex` rewrites the index"
    for name in shards:
        rows = indexed.pop(name, {})
        if name in troubled:
            continue
        spans = {key: (offset, length) for key, offset, length in sample_spans(run_dir / "shards" / name)}
        for key, span in spans.items():
            if key not in rows:
                report.add(name, key, f"sample missing from {INDEX_FILE}{stale}")
            elif rows[key][:2] != span:
                report.add(name, key, f"{INDEX_FILE} gives bytes {rows[key][:2]}, the shard has it at {span}{stale}")
            elif labels and rows[key][2] != labels.get(key, ("", "")):
                what = f"{INDEX_FILE} has split/identity {rows[key][2]}, clips.parquet {labels.get(key)}"
                report.add(name, key, what + stale)
        for key in sorted(set(rows) - set(spans)):
            report.add(name, key, f"{INDEX_FILE} lists a sample the shard does not hold{stale}")
    for name, rows in sorted(indexed.items()):
        report.add(name, "", f"{INDEX_FILE} lists {len(rows)} samples of a shard that does not exist{stale}")


def _check_shard(path: Path, record: ShardRecord | None, exists: bool, decode: bool) -> _ShardResult:
    result = _ShardResult(path.name)

    def add(key: str, what: str) -> None:
        result.problems.append(Problem(path.name, key, what))

    if record is None:
        add("", "shard is not in the ledger (no sha256 recorded for it)")
    elif record.removed:
        add("", f"shard is present but the ledger removed it (commit {record.commit}, {record.cause})")
    elif not exists:
        add("", f"shard is missing (the ledger records it at commit {record.commit}, {record.cause})")
        return result
    result.bytes = path.stat().st_size
    if record is not None and not record.removed:
        digest = sha256_file(path)
        if digest != record.sha256:
            add("", f"sha256 {digest[:16]}… differs from the ledger's {record.sha256[:16]}… (commit {record.commit})")
        elif result.bytes != record.bytes:
            add("", f"size {result.bytes} differs from the ledger's {record.bytes}")
    try:
        for key, members in _samples(path, add):
            result.keys.append(key)
            result.members += len(members)
            if decode:
                result.mixes += _check_sample(key, members, add)
    except (tarfile.TarError, OSError) as error:
        add("", f"unreadable tar: {error}")
    return result


def _samples(path: Path, add: _Add) -> Iterator[tuple[str, dict[str, bytes]]]:
    """(key, {ext: bytes}) per sample, in order; reports members that are not plain sample files
    and an archive that ends before its last byte (a damaged header stops tarfile silently)."""
    key, members = "", dict[str, bytes]()  # the sample being read
    with tarfile.open(path, "r:") as tar:
        for info in tar:
            name_key, dot, ext = info.name.partition(".")
            if not info.isfile() or not dot or "/" in info.name:
                add(name_key, f"member {info.name!r} is not a sample file (`KEY.EXT`)")
                continue
            handle = tar.extractfile(info)
            data = handle.read() if handle is not None else b""
            if len(data) != info.size:
                add(name_key, f"member {info.name} is truncated ({len(data)} of {info.size} bytes)")
            if name_key != key:
                if key:
                    yield key, members
                key, members = name_key, {}
            if ext in members:
                add(key, f"member {info.name} appears twice")
            members[ext] = data
        end = tar.offset
    if key:
        yield key, members
    size = path.stat().st_size
    with open(path, "rb") as handle:
        handle.seek(end)
        rest = handle.read()
    if rest.strip(b"\0"):
        add("", f"the tar's members end at byte {end} of {size}; the rest is not padding (a damaged header?)")


def _check_sample(key: str, members: dict[str, bytes], add: _Add) -> int:
    """Decode every member of one sample; returns 1 when its audio tracks were summed."""
    import soundfile as sf

    audio: dict[str, np.ndarray] = {}
    rates: dict[str, int] = {}
    if "json" not in members:
        add(key, "sample has no json member")
    for ext, data in members.items():
        if not data:
            add(key, f"{ext} is empty")
            continue
        try:
            if ext.endswith("json"):
                meta = json.loads(data)
                if ext == "json" and isinstance(meta, dict) and meta.get("key", key) != key:
                    add(key, f"json names key {meta.get('key')!r}")
            elif ext.endswith("flac"):
                samples, rate = sf.read(io.BytesIO(data), dtype="int32")
                track = ext.removesuffix(".flac")
                if track in TRACKS:
                    audio[track], rates[track] = samples, rate
            elif ext.endswith("npz"):
                with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
                    for name in arrays.files:
                        _ = arrays[name]  # reads and inflates the array
            elif ext.endswith("mp4"):
                _check_mp4(data)
        except Exception as error:  # any decoder's complaint is the finding
            add(key, f"{ext} does not decode: {type(error).__name__}: {error}")
    present = [t for t in TRACKS if f"{t}.flac" in members]
    if not present:
        return 0
    if len(present) < len(TRACKS):
        missing = [f"{t}.flac" for t in TRACKS if t not in present]
        add(key, f"has {', '.join(f'{t}.flac' for t in present)} but not {', '.join(missing)}")
        return 0
    if len(audio) < len(TRACKS):
        return 0  # a track that did not decode is reported above
    if len(set(rates.values())) > 1 or len({a.shape for a in audio.values()}) > 1:
        shapes = ", ".join(f"{t} {audio[t].shape} at {rates[t]} Hz" for t in TRACKS)
        add(key, f"audio tracks differ in length or rate: {shapes}")
        return 1
    total = audio["self"].astype(np.int64) + audio["other"] + audio["background"]
    wrong = np.flatnonzero(total != audio["mix"])
    if wrong.size:
        add(key, f"self + other + background != mix at {wrong.size} of {total.size} samples (first at {wrong[0]})")
    return 1


def _check_mp4(data: bytes) -> None:
    import cv2

    with tempfile.NamedTemporaryFile(suffix=".mp4") as handle:
        handle.write(data)
        handle.flush()
        capture = cv2.VideoCapture(handle.name)
        try:
            if not capture.isOpened():
                raise ValueError("OpenCV cannot open it")
            ok, frame = capture.read()
            if not ok or frame is None:
                raise ValueError("no frame decodes")
        finally:
            capture.release()


def _check_manifests(run_dir: Path, report: VerifyReport, where: dict[str, list[str]]) -> None:
    clips_path = run_dir / "manifests" / "clips.parquet"
    if not clips_path.is_file():
        report.add("", "", "manifests/clips.parquet is missing")
        return
    rows = pq.read_table(clips_path, columns=["key", "status", "shard"]).to_pylist()
    named: dict[str, str] = {}
    for row in rows:
        if row["status"] != "ok":
            continue
        report.manifest_rows += 1
        key, shard = row["key"], row["shard"]
        if key in named:
            report.add(shard, key, "clips.parquet has two ok rows for this key")
            continue
        named[key] = shard
        if not shard:
            report.add("", key, "ok row in clips.parquet names no shard")
        elif shard not in where.get(key, []):
            found = f" (it is in {', '.join(where[key])})" if key in where else ""
            report.add(shard, key, f"ok row in clips.parquet, but the sample is not in this shard{found}")
    for key, shards in sorted(where.items()):
        if key not in named:  # (a sample in a shard other than its row's is reported from the row)
            for shard in sorted(set(shards)):
                report.add(shard, key, "sample has no ok row in clips.parquet")


def _check_takedowns(run_dir: Path, report: VerifyReport, where: dict[str, list[str]]) -> None:
    records = takedown_records(run_dir)
    report.takedowns = records.num_rows
    if not records.num_rows:
        return
    commit_of = dict(zip(records.column("key").to_pylist(), records.column("commit").to_pylist()))
    for key in sorted(set(commit_of) & set(where)):
        for shard in sorted(set(where[key])):
            report.add(shard, key, f"taken down (commit {commit_of[key]}) but still in the shard")
    manifests = run_dir / "manifests"
    for name in ("clips.parquet", "identities.parquet", "splits.parquet"):
        if (manifests / name).is_file():
            keys = set(pq.read_table(manifests / name, columns=["key"]).column("key").to_pylist())
            for key in sorted(keys & set(commit_of)):
                report.add("", key, f"taken down (commit {commit_of[key]}) but still in manifests/{name}")
    listed = manifests / TAKEDOWNS_FILE
    have = set(pq.read_table(listed, columns=["key"]).column("key").to_pylist()) if listed.is_file() else set()
    if set(commit_of) - have:
        report.add("", "", f"manifests/{TAKEDOWNS_FILE} lacks {len(set(commit_of) - have)} of the ledger's takedowns")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN", help="the run directory")
    parser.add_argument("--no-decode", action="store_true", help="hashes and manifests only; do not open the media")
    parser.add_argument("--jobs", type=int, default=None, help="shards checked at once (default: CPUs, at most 8)")
    parser.add_argument(
        "--reindex", action="store_true", help=f"first rewrite manifests/{INDEX_FILE} from every shard's tar headers"
    )


def run_from_args(args: argparse.Namespace) -> int:
    if args.reindex:
        from voxhear.manifests.sample_index import write_sample_index
        from voxhear.pipeline.runlock import RunLock

        with RunLock(Path(args.run_dir)):  # not while a run commits
            write_sample_index(Path(args.run_dir), reuse=False)
    report = verify_run(Path(args.run_dir), decode=not args.no_decode, jobs=args.jobs)
    for problem in report.problems:
        print(problem.format())
    print(report.summary(), file=sys.stdout if report.ok else sys.stderr)
    return 0 if report.ok else 1


def _check_labels(run_dir: Path, report: VerifyReport) -> None:
    """Identity and split of every kept clip: clips.parquet against splits.parquet and
    identities.parquet (only where clips.parquet has both columns: the talk stage's clips; the
    sample index is checked against clips.parquet by _check_sample_index)."""
    manifests = run_dir / "manifests"
    clips_path = manifests / "clips.parquet"
    if not clips_path.is_file() or not {"identity_id", "split"} <= set(pq.read_schema(clips_path).names):
        return
    rows = pq.read_table(clips_path, columns=["key", "status", "identity_id", "split"]).to_pylist()
    want = {r["key"]: (r["identity_id"], r["split"]) for r in rows if r["status"] == "ok"}
    hint = "an interrupted end-of-run pass: the next `voxhear run` of this run directory completes it"
    for name, columns in (("splits.parquet", ["identity_id", "split"]), ("identities.parquet", ["identity_id"])):
        if not (manifests / name).is_file():
            continue
        table = pq.read_table(manifests / name, columns=["key", *columns]).to_pylist()
        listed = {r["key"]: tuple(r[c] for c in columns) for r in table}
        for key, label in sorted(want.items()):
            expected = label[: len(columns)]
            found = listed.get(key, ("",) * len(columns))
            if found != expected:
                report.add("", key, f"{name} has identity/split {found} but clips.parquet {expected}: {hint}")
