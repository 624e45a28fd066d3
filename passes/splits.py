"""Identity-disjoint train/val/test splits, recorded in the ledger and the manifests.

Which identity a clip belongs to is known only once every clip of the run is in (identities
are clustered over the whole run), so this runs after the run, like the clustering: it
assigns each identity to one split, records the assignment in one ledger commit (a `splits`
part, `manifests.integrity.ShardRewrite` with no shard in it), then fills `identity_id` and
`split` in `manifests/clips.parquet`, writes `manifests/splits.parquet` (key -> identity, split)
and the sample index (`manifests/samples.parquet`), from which a loader reads a sample's labels.

No shard is read or written: the labels are not in the samples' json (shard format 2;
docs/design/worker-shards.md), so a run's shards are final when the sink commits them. A kill
after the commit leaves the manifests behind the ledger, which the next run's consolidation
repairs from the recorded assignment (`integrity.consolidate_splits`) before this pass runs
again. The commit is skipped when the assignment is the one recorded, so the pass is idempotent
and a resumed run simply re-assigns over the larger set.

Assignment: identities are ordered by a seeded hash of their id (stable as a run grows,
independent of clustering order); with three or more identities, test and val each first get
the smallest one left, then every identity goes to the split furthest below its target share of
clip time.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from voxhear.manifests.integrity import SPLITS_FILE, SPLITS_SCHEMA, ShardRewrite, committed_splits, with_splits
from voxhear.manifests.sample_index import write_sample_index
from voxhear.pipeline.io import atomic_write_table

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
    # The assignment in one commit first, the manifests after (module docstring).
    recorded = committed_splits(run_dir)
    if recorded is None or not recorded.equals(table):
        rewrite = ShardRewrite(run_dir, cause="splits")
        rewrite.parts["splits"] = table
        rewrite.commit()
    atomic_write_table(clips_path, with_splits(clips, table))
    atomic_write_table(manifests / SPLITS_FILE, table)
    write_sample_index(run_dir)  # last: it joins the new labels to each sample's span
    return table
