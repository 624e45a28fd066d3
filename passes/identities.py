"""Run-wide identity clustering of face tracks across shots and videos into identity ids.

Embeddings are made at the face stage (dlib's 128-d ResNet descriptor by default, or ArcFace
through insightface where the store has it). Identities need every track of the run, which no
stage sees: Ray hands each worker one shot at a time. So clustering is a post-pass over the
consolidated `manifests/clips.parquet` (its `embedding` column), called by the runner after
`consolidate`, writing `manifests/identities.parquet` (key -> identity_id). With the talk stage,
voxhear.passes.splits then writes the ids and identity-disjoint splits into the shards' JSON.

The clustering is agglomerative with average linkage on Euclidean distance and cannot-link
constraints: two tracks visible at the same time in the same shot are two people, whatever
their embeddings say. It runs in two levels so that it scales with the number of videos rather
than the number of tracks squared: first within each source, then across sources on the
clusters' mean embeddings (the cannot-links carried along).
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

IDENTITIES_FILE = "identities.parquet"

IDENTITIES_SCHEMA = pa.schema(
    [
        pa.field("key", pa.string(), nullable=False),
        pa.field("source_id", pa.string(), nullable=False),
        pa.field("identity_id", pa.string(), nullable=False),
        # Tracks and sources in the identity, and this track's distance to the identity's mean.
        pa.field("identity_tracks", pa.int64(), nullable=False),
        pa.field("identity_sources", pa.int64(), nullable=False),
        pa.field("distance_to_centroid", pa.float64(), nullable=False),
    ]
)


def agglomerate(
    features: np.ndarray, threshold: float, cannot_link: np.ndarray | None = None, weights: np.ndarray | None = None
) -> np.ndarray:
    """Average-linkage agglomerative clustering with cannot-link constraints.

    Args:
        features: (N, D) embeddings.
        threshold: Clusters merge while their average distance is below this.
        cannot_link: (N, N) bool; True pairs never end in one cluster.
        weights: (N,) how many members each row stands for (for clusters of clusters).

    Returns:
        (N,) int cluster labels, numbered in order of each cluster's first row.
    """
    n = len(features)
    if n == 0:
        return np.zeros(0, np.int64)
    x = np.asarray(features, np.float64)
    dist = np.sqrt(np.maximum(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1), 0.0))
    forbid = np.zeros((n, n), bool) if cannot_link is None else np.array(cannot_link, bool, copy=True)
    size = np.ones(n) if weights is None else np.asarray(weights, np.float64).copy()
    alive = np.ones(n, bool)
    parent = np.arange(n)
    work = dist.copy()
    np.fill_diagonal(work, np.inf)
    work[forbid] = np.inf
    while True:
        flat = int(np.argmin(work))
        i, j = divmod(flat, n)
        if not np.isfinite(work[i, j]) or work[i, j] >= threshold:
            break
        # Merge j into i (Lance-Williams update for average linkage).
        merged = (size[i] * dist[i] + size[j] * dist[j]) / (size[i] + size[j])
        dist[i, :], dist[:, i] = merged, merged
        size[i] += size[j]
        forbid[i, :] |= forbid[j, :]
        forbid[:, i] = forbid[i, :]
        alive[j] = False
        parent[parent == j] = i
        row = dist[i].copy()
        row[~alive] = np.inf
        row[forbid[i]] = np.inf
        row[i] = np.inf
        work[i, :], work[:, i] = row, row
        work[j, :], work[:, j] = np.inf, np.inf
    roots = parent.copy()
    labels = np.empty(n, np.int64)
    order: dict[int, int] = {}
    for index, root in enumerate(roots):
        labels[index] = order.setdefault(int(root), len(order))
    return labels


@dataclass(slots=True)
class TrackRef:
    """What clustering needs of one track."""

    key: str
    source_id: str
    shot_index: int
    start: int
    end: int
    embedding: np.ndarray


def co_visible(tracks: list[TrackRef]) -> np.ndarray:
    """(N, N) bool: both tracks are on screen at one time in one shot of one source."""
    n = len(tracks)
    out = np.zeros((n, n), bool)
    by_shot: dict[tuple[str, int], list[int]] = defaultdict(list)
    for index, t in enumerate(tracks):
        by_shot[(t.source_id, t.shot_index)].append(index)
    for members in by_shot.values():
        for a in members:
            for b in members:
                if a != b and tracks[a].start < tracks[b].end and tracks[b].start < tracks[a].end:
                    out[a, b] = True
    return out


def cluster_tracks(tracks: list[TrackRef], threshold: float) -> np.ndarray:
    """Identity labels for `tracks`: per source first, then across sources."""
    n = len(tracks)
    if n == 0:
        return np.zeros(0, np.int64)
    forbid = co_visible(tracks)
    emb = np.stack([t.embedding for t in tracks]).astype(np.float64)
    by_source: dict[str, list[int]] = defaultdict(list)
    for index, t in enumerate(tracks):
        by_source[t.source_id].append(index)
    local = np.empty(n, np.int64)
    groups: list[list[int]] = []
    for source in sorted(by_source):
        members = by_source[source]
        labels = agglomerate(emb[members], threshold, forbid[np.ix_(members, members)])
        for label in range(int(labels.max()) + 1):
            group = [members[k] for k in np.nonzero(labels == label)[0]]
            for m in group:
                local[m] = len(groups)
            groups.append(group)
    centroids = np.stack([emb[g].mean(axis=0) for g in groups])
    sizes = np.array([len(g) for g in groups], np.float64)
    group_forbid = np.zeros((len(groups), len(groups)), bool)
    for a, ga in enumerate(groups):
        for b, gb in enumerate(groups):
            if a != b and forbid[np.ix_(ga, gb)].any():
                group_forbid[a, b] = True
    global_labels = agglomerate(centroids, threshold, group_forbid, sizes)
    return global_labels[local]


def identity_name(keys: list[str]) -> str:
    """A stable id for a cluster: a hash of its first key (unchanged when later tracks join)."""
    return "face-" + hashlib.sha1(min(keys).encode()).hexdigest()[:12]


def assign_identities(run_dir: Path, threshold: float) -> pa.Table | None:
    """Cluster every kept face track of the run; write manifests/identities.parquet.

    Returns:
        The table written, or None when clips.parquet has no face tracks (no `embedding`).
    """
    from voxhear.pipeline.io import atomic_write_table

    manifests = Path(run_dir) / "manifests"
    clips_path = manifests / "clips.parquet"
    if not clips_path.is_file():
        return None
    wanted = ["key", "source_id", "status", "shot_index", "track_start_frame", "track_end_frame", "embedding"]
    names = set(pq.read_schema(clips_path).names)
    if not set(wanted) <= names:
        return None
    optional = [c for c in ("track_index",) if c in names]
    rows = pq.read_table(clips_path, columns=wanted + optional).to_pylist()
    # Clips (talk stage) are windows of tracks: cluster each track once, under its first key,
    # and give every clip of it the track's identity.
    keys_of_track: dict[tuple, list[str]] = defaultdict(list)
    tracks: list[TrackRef] = []
    for r in rows:
        if r["status"] != "ok" or not r["embedding"]:
            continue
        # Without a track_index column (face-stage runs) every row is its own track.
        track_id = (r["source_id"], int(r["shot_index"]), r.get("track_index", r["key"]))
        if track_id not in keys_of_track:
            tracks.append(
                TrackRef(
                    r["key"],
                    r["source_id"],
                    int(r["shot_index"]),
                    int(r["track_start_frame"]),
                    int(r["track_end_frame"]),
                    np.asarray(r["embedding"], np.float64),
                )
            )
        keys_of_track[track_id].append(r["key"])
    track_of_key = {keys[0]: track_id for track_id, keys in keys_of_track.items()}
    labels = cluster_tracks(tracks, threshold)
    out: list[dict[str, Any]] = []
    for label in range(int(labels.max()) + 1 if len(labels) else 0):
        members = [tracks[i] for i in np.nonzero(labels == label)[0]]
        centroid = np.mean([m.embedding for m in members], axis=0)
        name = identity_name([m.key for m in members])
        n_sources = len({m.source_id for m in members})
        for m in members:
            for key in keys_of_track[track_of_key[m.key]]:
                out.append(
                    {
                        "key": key,
                        "source_id": m.source_id,
                        "identity_id": name,
                        "identity_tracks": len(members),
                        "identity_sources": n_sources,
                        "distance_to_centroid": float(np.linalg.norm(m.embedding - centroid)),
                    }
                )
    out.sort(key=lambda r: r["key"])
    table = pa.Table.from_pylist(out, schema=IDENTITIES_SCHEMA)
    atomic_write_table(manifests / IDENTITIES_FILE, table)
    return table
