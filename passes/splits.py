"""Identity-disjoint train/val/test splits, recorded in the manifests and in the shards.

Which identity a clip belongs to is known only once every clip of the run is in (identities
are clustered over the whole run), so this runs after the run, like the clustering: it
assigns each identity to one split, rewrites the `json` member of every sample in the shards
that changed, then fills `identity_id` and `split` in `manifests/clips.parquet` and writes
`manifests/splits.parquet` (key -> identity, split).

The shards come first, in one ledger commit (`manifests.integrity.ShardRewrite`) that records
their new sha256 and the assignment itself (a `splits` part). A kill before that commit leaves
the old shards and manifests; a kill after it leaves shards ahead of the manifests, which
`voxhear verify` reports and the next run's consolidation repairs from the recorded assignment
(`integrity.consolidate_splits`) before this pass runs again. The commit is skipped when no
shard changed and the assignment is the one recorded, so the pass is idempotent and a resumed
run simply re-assigns over the larger set.

Assignment: identities are ordered by a seeded hash of their id (stable as a run grows,
independent of clustering order); with three or more identities, test and val each first get
the smallest one left, then every identity goes to the split furthest below its target share of
clip time.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from collections import defaultdict
from contextlib import nullcontext
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from voxhear.manifests.integrity import SPLITS_FILE, SPLITS_SCHEMA, ShardRewrite, committed_splits, with_splits
from voxhear.manifests.sample_index import write_sample_index
from voxhear.pipeline.io import atomic_path, atomic_write_table
from voxhear.pipeline.shards import copy_members

SPLITS = ("train", "val", "test")


def assign_splits(
    seconds_by_identity: dict[str, float], val_share: float, test_share: float, seed: int = 0
) -> dict[str, str]:
    """identity -> split, disjoint by construction, clip time near the target shares."""
    order = sorted(seconds_by_identity, key=lambda i: hashlib.sha256(f"{seed}:{i}".encode()).hexdigest())
    targets = {"train": 1.0 - val_share - test_share, "val": val_share, "test": test_share}
    total = sum(seconds_by_identity.values()) or 1.0
    assigned = {split: 0.0 for split in SPLITS}
    out: dict[str, str] = {}
    if len(order) >= 3:
        # One identity each for test and val first (the smallest, so that a small run keeps
        # most of its data for training), then the greedy fill.
        smallest = sorted(order, key=lambda i: seconds_by_identity[i])
        for split in ("test", "val"):
            if targets[split] > 0:
                identity = smallest.pop(0)
                order.remove(identity)
                out[identity] = split
                assigned[split] += seconds_by_identity[identity]
    for identity in order:
        split = max(SPLITS, key=lambda s: (targets[s] * total - assigned[s], s == "train"))
        out[identity] = split
        assigned[split] += seconds_by_identity[identity]
    return out


def write_splits(run_dir: Path, val_share: float, test_share: float, seed: int = 0) -> pa.Table | None:
    """Assign splits over the run's kept clips and record them everywhere; None without clips."""
    manifests = Path(run_dir) / "manifests"
    clips_path, identities_path = manifests / "clips.parquet", manifests / "identities.parquet"
    if not (clips_path.is_file() and identities_path.is_file()):
        return None
    clips = pq.read_table(clips_path)
    if "split" not in clips.column_names:
        return None
    identity_of = {r["key"]: r["identity_id"] for r in pq.read_table(identities_path).to_pylist()}
    seconds: dict[str, float] = defaultdict(float)
    for row in clips.select(["key", "status", "clip_start_s", "clip_end_s"]).to_pylist():
        if row["status"] == "ok" and row["key"] in identity_of:
            seconds[identity_of[row["key"]]] += row["clip_end_s"] - row["clip_start_s"]
    split_of_identity = assign_splits(dict(seconds), val_share, test_share, seed)
    rows = sorted(
        (
            {"key": k, "identity_id": i, "split": split_of_identity[i]}
            for k, i in identity_of.items()
            if i in split_of_identity
        ),
        key=lambda r: r["key"],
    )
    table = pa.Table.from_pylist(rows, schema=SPLITS_SCHEMA)
    by_key = {r["key"]: r for r in rows}
    # The shards and the assignment in one commit first, the manifests after (module docstring).
    shards = {r["shard"] for r in clips.select(["shard", "status"]).to_pylist() if r["status"] == "ok" and r["shard"]}
    rewrite = ShardRewrite(run_dir, cause="splits")
    changed = False
    for shard in sorted(shards):
        changed |= rewrite_shard_metadata(Path(run_dir) / "shards" / shard, by_key, dest=rewrite.stage(shard))
    recorded = committed_splits(run_dir)
    if changed or recorded is None or not recorded.equals(table):
        rewrite.parts["splits"] = table
    rewrite.commit()
    atomic_write_table(clips_path, with_splits(clips, table))
    atomic_write_table(manifests / SPLITS_FILE, table)
    write_sample_index(run_dir)  # last: the rewritten shards' spans moved, and the splits are new
    return table


def rewrite_shard_metadata(path: Path, by_key: dict[str, dict], dest: Path | None = None) -> bool:
    """Set identity_id and split in every sample's `json`; returns whether the shard changed.

    The first pass reads only the small `json` members; when one needs a change, the second
    streams every member into a temp shard (media never held in memory: shards run to
    `shards.max_megabytes`) that replaces the original atomically, or into `dest` when given
    (a staged shard of a `ShardRewrite`, left unwritten when nothing changed).
    """
    updated: dict[str, bytes] = {}
    with tarfile.open(path) as tar:
        for info in tar.getmembers():
            key, _, ext = info.name.partition(".")
            if ext != "json" or key not in by_key:
                continue
            member = tar.extractfile(info) if info.isfile() else None
            if member is None:
                continue
            meta = json.loads(member.read())
            wanted = {"identity_id": by_key[key]["identity_id"], "split": by_key[key]["split"]}
            if any(meta.get(k) != v for k, v in wanted.items()):
                meta.update(wanted)
                updated[info.name] = json.dumps(meta, sort_keys=True).encode()
        if not updated:
            return False
        with nullcontext(dest) if dest else atomic_path(path) as tmp, tarfile.open(tmp, "w") as out:
            copy_members(tar, out, replace=updated)
    return True
