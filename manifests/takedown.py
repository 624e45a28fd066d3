"""Take samples out of a run for good: shards, manifests and work area, recorded in the ledger.

`takedown(run_dir, keys=…, source_ids=…, identities=…, reason=…)`:

1. resolves the selectors to sample keys, from `clips.parquet`, `identities.parquet` and the
   shards themselves (a source id also matches every key in a shard that starts with it);
2. rewrites every shard holding one of them without its members (a shard left empty is
   removed), and records the shards' new sha256 and one takedown row per key (what was removed,
   from which shard, matched by which selector, why and when) in one ledger commit
   (`manifests.integrity.ShardRewrite`: a kill leaves the run as it was before or after). A
   damaged shard (one that does not read to its end, or whose sha256 is not the ledger's: what
   `voxhear verify` reports) is never copied; it is removed when all its samples are taken down,
   and the takedown is refused otherwise;
3. drops every row of those keys from clips/identities/splits.parquet, takes the kept ones off
   their source's `n_clips_ok` and `clip_seconds` in sources.parquet, and writes
   `manifests/takedowns.parquet` (every takedown of the run);
4. deletes the work-area files only the removed rows referenced, and `work/<source_id>/` of a
   source taken down by its id.

The source stays committed in the ledger and the removed clips stay in its clips parts, so a
resume (`voxhear run` with the same inputs) skips the source, would not write those keys again,
and every consolidation drops them (`integrity.consolidate_takedowns`). Step 3 always applies
every recorded takedown, so rerunning a takedown that was killed after its commit finishes it.
"""

from __future__ import annotations

import argparse
import datetime
import shutil
import sys
import tarfile
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from voxhear.manifests.integrity import (
    TAKEDOWNS_FILE,
    ShardRewrite,
    apply_takedowns,
    complete_rewrites,
    shard_records,
    takedown_records,
)
from voxhear.manifests.sample_index import write_sample_index
from voxhear.pipeline.io import atomic_write_table, sha256_file
from voxhear.pipeline.remote_run import is_remote, staged_change
from voxhear.pipeline.runlock import RunLock
from voxhear.pipeline.shards import copy_members

_SHARD_GLOB = "[0-9][0-9][0-9][0-9][0-9][0-9].tar"


class TakedownError(ValueError):
    """A takedown that cannot be done: a selector matched nothing, or a damaged shard would lose
    samples that are not taken down (nothing was changed)."""


@dataclass
class TakedownResult:
    removed: list[str] = field(default_factory=list)  # keys taken down now
    already: list[str] = field(default_factory=list)  # selectors an earlier takedown already covered
    shards_rewritten: list[str] = field(default_factory=list)
    shards_removed: list[str] = field(default_factory=list)
    work_files_removed: int = 0
    commit: int | None = None

    def format(self) -> str:
        lines = [
            f"took down {len(self.removed)} sample key(s) in commit {self.commit}: "
            f"{len(self.shards_rewritten)} shard(s) rewritten, {len(self.shards_removed)} removed, "
            f"{self.work_files_removed} work file(s) deleted"
            if self.removed
            else "nothing new to take down"
        ]
        lines += [f"  already taken down: {selector}" for selector in self.already]
        return "\n".join(lines)


def read_keys_file(path: Path) -> list[str]:
    """Sample keys, one a line; blank lines and `#` comments are skipped."""
    lines = (line.split("#", 1)[0].strip() for line in Path(path).read_text().splitlines())
    return [line for line in lines if line]


def takedown(
    run_dir: Path,
    keys: Iterable[str] = (),
    source_ids: Iterable[str] = (),
    identities: Iterable[str] = (),
    reason: str = "",
) -> TakedownResult:
    """Remove the samples the selectors match from the run (see the module docstring)."""
    run_dir = Path(run_dir)
    manifests = run_dir / "manifests"
    if not (manifests / "_ledger").is_dir() or not (manifests / "clips.parquet").is_file():
        raise TakedownError(f"{run_dir} is not a run directory (no manifests/_ledger or manifests/clips.parquet)")
    # A takedown must not interleave with a run's commits.
    with RunLock(run_dir):
        return _takedown(run_dir, list(keys), list(source_ids), list(identities), reason)


def _takedown(
    run_dir: Path, keys: list[str], source_ids: list[str], identities: list[str], reason: str
) -> TakedownResult:
    manifests = run_dir / "manifests"
    complete_rewrites(run_dir)
    clips = pq.read_table(manifests / "clips.parquet")
    identity_table = _read(manifests / "identities.parquet")
    in_shards, damaged = _keys_in_shards(run_dir / "shards")
    done = takedown_records(run_dir).to_pylist()
    done_keys = {row["key"] for row in done}

    rows_by_key: dict[str, list[dict]] = defaultdict(list)
    wanted = [
        c for c in ("key", "source_id", "source_uri", "status", "shard", "identity_id") if c in clips.column_names
    ]
    for row in clips.select(wanted).to_pylist():
        if row["key"]:
            rows_by_key[row["key"]].append(row)
    identity_of = {}
    if identity_table is not None:
        identity_of = dict(
            zip(identity_table.column("key").to_pylist(), identity_table.column("identity_id").to_pylist())
        )
    for key, rows in rows_by_key.items():
        for row in rows:
            if row.get("identity_id"):
                identity_of.setdefault(key, row["identity_id"])

    matched: dict[str, str] = {}  # key -> selector
    unmatched, result = [], TakedownResult()
    known = set(rows_by_key) | set(in_shards)
    selectors = [("key", k, {k} & known) for k in keys]
    for sid in source_ids:
        found = {k for k, rows in rows_by_key.items() if any(r["source_id"] == sid for r in rows)}
        selectors.append(("source_id", sid, found | {k for k in in_shards if k.startswith(f"{sid}-")}))
    selectors += [("identity", i, {k for k, v in identity_of.items() if v == i}) for i in identities]
    for kind, value, found in selectors:
        selector = f"{kind}={value}"
        new = found - done_keys
        for key in sorted(new):
            matched.setdefault(key, selector)
        if not new:
            earlier = {"key": "key", "source_id": "source_id", "identity": "identity_id"}[kind]
            if any(row[earlier] == value for row in done) or found:
                result.already.append(selector)
            else:
                unmatched.append(selector)
    if unmatched:
        raise TakedownError(f"no sample matches {', '.join(unmatched)} in {run_dir}; nothing was taken down")

    if matched:
        _remove_from_shards(run_dir, matched, in_shards, damaged, rows_by_key, identity_of, reason, result)
    records = takedown_records(run_dir)
    all_keys = set(records.column("key").to_pylist())
    removed_rows = _update_manifests(run_dir, records, all_keys)
    write_sample_index(run_dir)  # the rewritten shards' spans moved
    result.work_files_removed = _remove_work_files(run_dir, removed_rows, source_ids)
    result.removed = sorted(matched)
    return result


def _remove_from_shards(
    run_dir: Path,
    matched: dict[str, str],
    in_shards: dict[str, list[str]],
    damaged: dict[str, str],
    rows_by_key: dict[str, list[dict]],
    identity_of: dict[str, str],
    reason: str,
    result: TakedownResult,
) -> None:
    affected: dict[str, set[str]] = defaultdict(set)
    for key in matched:
        for shard in in_shards.get(key, []):
            affected[shard].add(key)
        for row in rows_by_key.get(key, []):  # a damaged shard may no longer show the key
            if row.get("shard") in damaged:
                affected[row["shard"]].add(key)
    # A damaged shard (cut short, or not the bytes the ledger recorded) is not copied: that would
    # record its damage as the shard's new sha256. It goes when every sample it holds, by the
    # manifest or by what is still readable, is taken down; else nothing is done.
    records = shard_records(run_dir)
    for shard in sorted(set(affected) - set(damaged)):
        record = records.get(shard)
        if record is not None and not record.removed and sha256_file(run_dir / "shards" / shard) != record.sha256:
            damaged[shard] = f"its sha256 differs from the ledger's (commit {record.commit})"
    for shard in sorted(set(affected) & set(damaged)):
        held = {k for k, rows in rows_by_key.items() if any(r.get("shard") == shard for r in rows)}
        held |= {k for k, shards in in_shards.items() if shard in shards}
        left = sorted(held - set(matched))
        if left:
            raise TakedownError(
                f"shard {shard} is damaged ({damaged[shard]}): its other {len(left)} sample(s) cannot be "
                f"copied out of it ({', '.join(left[:3])}{', ...' if len(left) > 3 else ''}); take them down too, "
                f"or restore the shard from a copy whose sha256 `voxhear verify` accepts; nothing was taken down"
            )
    rewrite = ShardRewrite(run_dir, cause="takedown")
    for shard, gone in sorted(affected.items()):
        if shard not in damaged and _copy_without(run_dir / "shards" / shard, gone, rewrite.stage(shard)):
            result.shards_rewritten.append(shard)
        else:
            rewrite.remove(shard)
            result.shards_removed.append(shard)
    now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    for key, selector in sorted(matched.items()):
        rows = rows_by_key.get(key, [])
        ok = [r for r in rows if r["status"] == "ok"] or rows
        first = ok[0] if ok else {}
        rewrite.takedowns.append(
            {
                "key": key,
                "source_id": first.get("source_id") or key.split("-", 1)[0],
                "source_uri": first.get("source_uri", ""),
                "identity_id": identity_of.get(key, ""),
                "shard": ",".join(in_shards.get(key, [])) or first.get("shard", ""),
                "selector": selector,
                "reason": reason,
                "taken_down_at": now,
            }
        )
    result.commit = rewrite.commit()


def _copy_without(source: Path, keys: set[str], dest: Path) -> bool:
    """Write `source` without the members of `keys` to `dest`; False (and nothing written) if no sample is left."""
    with tarfile.open(source) as tar:
        if all(info.name.partition(".")[0] in keys for info in tar.getmembers()):
            return False
        with tarfile.open(dest, "w") as out:
            copy_members(tar, out, drop_keys=keys)
    return True


def _keys_in_shards(shards_dir: Path) -> tuple[dict[str, list[str]], dict[str, str]]:
    """sample key -> the shards holding it, and shard -> why it is damaged, for the shards whose
    tar does not read to its end (their keys as far as they read)."""
    found: dict[str, list[str]] = defaultdict(list)
    damaged: dict[str, str] = {}
    for path in sorted(shards_dir.glob(_SHARD_GLOB)):
        keys: dict[str, None] = {}
        try:
            with tarfile.open(path) as tar:
                for info in tar:
                    keys.setdefault(info.name.partition(".")[0])
        except (tarfile.TarError, OSError) as error:
            damaged[path.name] = f"unreadable tar: {error}"
        for key in keys:
            found[key].append(path.name)
    return found, damaged


def _read(path: Path) -> pa.Table | None:
    return pq.read_table(path) if path.is_file() else None


def _update_manifests(run_dir: Path, records: pa.Table, keys: set[str]) -> list[dict]:
    """Apply every recorded takedown to the manifests; returns the clips rows removed now."""
    manifests = run_dir / "manifests"
    atomic_write_table(manifests / TAKEDOWNS_FILE, records)
    if not keys:
        return []
    gone = pa.array(sorted(keys), pa.string())
    clips, sources = pq.read_table(manifests / "clips.parquet"), pq.read_table(manifests / "sources.parquet")
    removed = clips.filter(pc.is_in(clips.column("key"), gone)).to_pylist()
    sources, clips = apply_takedowns(sources, clips, keys)
    if removed:
        atomic_write_table(manifests / "sources.parquet", sources)
        atomic_write_table(manifests / "clips.parquet", clips)
    for name in ("identities.parquet", "splits.parquet"):
        table = _read(manifests / name)
        if table is not None:
            hit = pc.is_in(table.column("key"), gone)
            if pc.any(hit).as_py():
                atomic_write_table(manifests / name, table.filter(pc.invert(hit)))
    return removed


def _uri_paths(row: dict, work: Path) -> set[Path]:
    """The work-area files a manifest row references (its `*_uri` and `*_uris` columns)."""
    paths = set()
    for column, value in row.items():
        if column == "source_uri" or not column.endswith(("_uri", "_uris")) or not value:
            continue
        for item in value if isinstance(value, list) else [value]:
            path = Path(item)
            if path.is_relative_to(work):
                paths.add(path)
    return paths


def _remove_work_files(run_dir: Path, removed_rows: list[dict], source_ids: list[str]) -> int:
    """Delete the files only removed rows referenced, and the work folders of sources taken down by id."""
    work = (run_dir / "work").absolute()
    count = 0
    for sid in source_ids:
        folder = work / sid
        if sid and "/" not in sid and folder.is_dir():
            count += sum(1 for p in folder.rglob("*") if p.is_file())
            shutil.rmtree(folder)
    if not removed_rows:
        return count
    candidates = set().union(*(_uri_paths(row, work) for row in removed_rows))
    manifests = run_dir / "manifests"
    for name in ("clips.parquet", "sources.parquet"):
        table = pq.read_table(manifests / name)
        columns = [c for c in table.column_names if c.endswith(("_uri", "_uris")) and c != "source_uri"]
        for row in table.select(columns).to_pylist():
            candidates -= _uri_paths(row, work)
    for path in sorted(candidates):
        if path.is_file():
            path.unlink()
            count += 1
    return count


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN", help="the run directory")
    parser.add_argument("--key", action="append", default=[], help="a sample key (repeatable)")
    parser.add_argument("--source-id", action="append", default=[], help="every sample of a source (repeatable)")
    parser.add_argument(
        "--identity",
        action="append",
        default=[],
        help="every sample of an identity id of identities.parquet (repeatable)",
    )
    parser.add_argument(
        "--keys-file", action="append", default=[], type=Path, help="a file of sample keys, one a line (# comments)"
    )
    parser.add_argument("--reason", default="", help="why, recorded with every removed sample")


def run_from_args(args: argparse.Namespace) -> int:
    keys = list(args.key) + [k for path in args.keys_file for k in read_keys_file(path)]
    if not (keys or args.source_id or args.identity):
        print("voxhear takedown: error: give --key, --keys-file, --source-id or --identity", file=sys.stderr)
        return 2
    try:
        if is_remote(args.run_dir):
            # On object storage: taken down in the staging copy, then published (remote_run.staged_change).
            with staged_change(args.run_dir) as local:
                result = takedown(local, keys, args.source_id, args.identity, reason=args.reason)
        else:
            result = takedown(args.run_dir, keys, args.source_id, args.identity, reason=args.reason)
    except TakedownError as error:
        print(f"voxhear takedown: error: {error}", file=sys.stderr)
        return 2
    print(result.format())
    return 0
