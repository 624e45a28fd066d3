"""Run-wide identity clustering of face tracks across shots and videos into identity ids.

Embeddings are made at the face stage (dlib's 128-d ResNet descriptor by default, or ArcFace
through insightface where the store has it). Identities need every track of the run, which no
stage sees: Ray hands each worker one shot at a time. So clustering is a post-pass over the
consolidated `manifests/clips.parquet` (its `embedding` column), called by the runner after
`consolidate`, writing `manifests/identities.parquet` (key -> identity_id). With the talk stage,
voxhear.passes.splits then records identity-disjoint splits in the ledger and the manifests.

The clustering is agglomerative with average linkage on Euclidean distance and cannot-link
constraints: two tracks visible at the same time in the same shot are two people, whatever
their embeddings say. It runs in two levels: first within each source, then across sources on
the clusters' mean embeddings (weighted by their track counts, the cannot-links carried along).

Memory grows with the number of tracks, never with its square, so that a run of 10^5 tracks
(some hundred input hours) clusters on the driver:
- cannot-links are kept as pairs (tracks on screen together in one shot: few);
- a source of up to `DENSE_MAX_TRACKS` tracks is clustered with the dense `agglomerate` (its
  distance matrix is bounded by that source's track count);
- larger sources and the cross-source level use `sparse_agglomerate`: the same greedy merges,
  over candidate pairs only. Average linkage can only join two clusters whose average distance
  is below the threshold, hence that hold a pair of members closer than it; so the candidates
  are found once, as each row's `NEIGHBOURS` nearest rows within the threshold (chunked float32
  matrix products, then exact float64 distances), and each merge carries them over to the merged
  cluster. With every pair within the threshold kept (`neighbours=None`) this gives the dense
  result exactly (up to rounding, and up to `SAMPLE`: an average distance no merge carried over
  is measured on at most SAMPLE members of each cluster); the cap bounds memory at about
  N * NEIGHBOURS pairs when many rows are mutually close (one person in thousands of sources,
  thousands of tracks of a few people in one long video), where they merge all the same.
Time: about 10 s for 10^5 tracks over 5,000 sources, 100 s when each track is its own cluster
after the first level, on 2 cores (benchmarks/identity_scale.py, peak RSS under 1 GB).
"""

from __future__ import annotations

import hashlib
import heapq
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
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

# Sources with at most this many tracks are clustered with the dense, exact `agglomerate`
# (n^2 distances, n^3 time); larger ones with `sparse_agglomerate`.
DENSE_MAX_TRACKS = 1000
# Candidate neighbours found per row by `sparse_agglomerate` (None: every row within the threshold).
NEIGHBOURS: int | None = 32
# Rows of a cluster that measure its average distance to another where no merge carried it over.
SAMPLE = 256
# Values in one temporary block of distances (2^22 float64: 32 MiB).
BLOCK = 1 << 22


def _dense_distances(x: np.ndarray) -> np.ndarray:
    """(N, N) Euclidean distances, computed a block of rows at a time (no N x N x D temporary)."""
    n, dim = x.shape
    out = np.empty((n, n))
    step = max(1, BLOCK // max(1, n * dim))
    for a in range(0, n, step):
        b = min(n, a + step)
        out[a:b] = np.sqrt(np.maximum(((x[a:b, None, :] - x[None, :, :]) ** 2).sum(-1), 0.0))
    return out


def _pair_distances(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Euclidean distances of rows lo[k] and hi[k], as `_dense_distances` computes them."""
    out = np.empty(len(lo))
    step = max(1, BLOCK // max(1, x.shape[1]))
    for a in range(0, len(lo), step):
        b = min(len(lo), a + step)
        out[a:b] = np.sqrt(np.maximum(((x[lo[a:b]] - x[hi[a:b]]) ** 2).sum(-1), 0.0))
    return out


def agglomerate(
    features: np.ndarray, threshold: float, cannot_link: np.ndarray | None = None, weights: np.ndarray | None = None
) -> np.ndarray:
    """Average-linkage agglomerative clustering with cannot-link constraints (dense, exact).

    Memory is N^2 and time N^3: for one source's tracks (up to DENSE_MAX_TRACKS); more rows go
    to `sparse_agglomerate`, which merges the same pairs in the same order.

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
    if n == 1:
        return np.zeros(1, np.int64)
    x = np.asarray(features, np.float64)
    dist = _dense_distances(x)
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
    return _first_row_order(parent)


def _first_row_order(roots: np.ndarray) -> np.ndarray:
    """Labels 0, 1, ... for the distinct values of `roots`, in order of their first row."""
    _, first, inverse = np.unique(roots, return_index=True, return_inverse=True)
    rank = np.empty(len(first), np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))
    return rank[inverse.reshape(-1)]


def near_pairs(
    features: np.ndarray, threshold: float, neighbours: int | None = NEIGHBOURS
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs of rows closer than `threshold`: each row's `neighbours` nearest (None: all of them).

    Squared distances are screened in float32 a block of rows at a time (block x N values, one
    matrix product of [-2x, 1, |x|^2] by [x, |x|^2, 1]), then the pairs kept are measured exactly
    in float64. A pair is kept when either row has the other among its nearest, so at most
    N * neighbours pairs.

    Returns:
        lo, hi (int64, lo < hi, sorted) and their float64 distances.
    """
    x = np.asarray(features, np.float64)
    n = len(x)
    if n < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    centred = x - x.mean(axis=0)
    sq = np.einsum("ij,ij->i", centred, centred)[:, None]
    ones = np.ones((n, 1))
    left = np.hstack([-2.0 * centred, ones, sq]).astype(np.float32)
    right = np.hstack([centred, sq, ones]).astype(np.float32)
    # float32 rounding of |a|^2 + |b|^2 - 2ab is far below this margin; float64 decides below.
    limit = threshold**2 + 1e-4 * (1.0 + 2.0 * float(sq.max()))
    step = max(1, BLOCK // n)
    found_lo: list[np.ndarray] = []
    found_hi: list[np.ndarray] = []
    for a in range(0, n, step):
        b = min(n, a + step)
        block = left[a:b] @ right.T
        where = np.flatnonzero(block < limit)
        rows, cols = np.divmod(where, n)
        off = rows + a != cols
        rows, cols = rows[off], cols[off]
        if neighbours is not None:
            rows, cols = _nearest_of_rows(block, a, rows, cols, neighbours)
        rows += a
        found_lo.append(np.minimum(rows, cols))
        found_hi.append(np.maximum(rows, cols))
        del block, where
    code = np.unique(np.concatenate(found_lo).astype(np.int64) * n + np.concatenate(found_hi))
    lo, hi = code // n, code % n
    dist = _pair_distances(x, lo, hi)
    keep = dist < threshold
    return lo[keep], hi[keep], dist[keep]


def _nearest_of_rows(
    block: np.ndarray, first: int, rows: np.ndarray, cols: np.ndarray, neighbours: int
) -> tuple[np.ndarray, np.ndarray]:
    """Of the close entries (rows, cols) of `block` (row-major, no diagonal), each row's `neighbours` nearest."""
    counts = np.bincount(rows, minlength=len(block))
    over = counts > neighbours
    if not over.any():
        return rows, cols
    keep_rows, keep_cols = [rows[~over[rows]]], [cols[~over[rows]]]
    # Rows with many close entries: partition the whole row; with a few: sort those entries.
    heavy = counts > max(neighbours, block.shape[1] // 16)
    light = over & ~heavy
    if light.any():
        chosen = light[rows]
        r, c = rows[chosen], cols[chosen]
        order = np.lexsort((block[r, c], r))
        r, c = r[order], c[order]
        sizes = counts[light]
        rank = np.arange(len(r)) - np.repeat(np.cumsum(sizes) - sizes, sizes)
        keep_rows.append(r[rank < neighbours])
        keep_cols.append(c[rank < neighbours])
    if heavy.any():
        which = np.nonzero(heavy)[0]
        part = block[which]
        part[np.arange(len(which)), which + first] = np.inf
        keep_rows.append(np.repeat(which, neighbours))
        keep_cols.append(np.argpartition(part, neighbours - 1, axis=1)[:, :neighbours].reshape(-1))
    return np.concatenate(keep_rows), np.concatenate(keep_cols)


def _spread_sample(rows: list[int], most: int) -> list[int]:
    """At most `most` of `rows`, evenly spaced."""
    if len(rows) <= most:
        return rows
    return [rows[k] for k in np.linspace(0, len(rows) - 1, most).astype(np.int64).tolist()]


def _mean_distances(
    centred: np.ndarray, sq: np.ndarray, weights: np.ndarray, rows: list[int], groups: list[list[int]]
) -> list[float]:
    """Weighted mean distance between the rows `rows` and each group of rows in `groups`.

    Groups of more than SAMPLE rows are represented by SAMPLE of them, evenly spaced (the mean
    over 256 x 256 pairs is within about 1e-3 of the whole), so that one person's clusters of
    thousands of tracks cost no more than smaller ones.
    """
    rows = _spread_sample(rows, SAMPLE)
    groups = [_spread_sample(g, SAMPLE) for g in groups]
    left = np.asarray(rows)
    left_w = weights[left]
    left_x, left_sq = centred[left], sq[left, None]
    lengths = np.fromiter(map(len, groups), np.int64, len(groups))
    cols = np.fromiter(chain.from_iterable(groups), np.int64, int(lengths.sum()))
    owner = np.repeat(np.arange(len(groups)), lengths)
    totals = np.zeros(len(groups))
    step = max(1, BLOCK // len(left))
    for a in range(0, len(cols), step):
        right = cols[a : a + step]
        d2 = left_sq + sq[None, right] - 2.0 * (left_x @ centred[right].T)
        sums = left_w @ np.sqrt(np.maximum(d2, 0.0))
        totals += np.bincount(owner[a : a + step], weights=sums * weights[right], minlength=len(groups))
    group_w = np.bincount(owner, weights=weights[cols], minlength=len(groups))
    return (totals / (left_w.sum() * group_w)).tolist()


def sparse_agglomerate(
    features: np.ndarray,
    threshold: float,
    cannot_link: np.ndarray | Iterable[tuple[int, int]] | None = None,
    weights: np.ndarray | None = None,
    neighbours: int | None = NEIGHBOURS,
) -> np.ndarray:
    """`agglomerate` over candidate pairs only: memory N * neighbours, not N^2.

    The greedy is the same: the closest pair of clusters (ties: the lowest pair of first rows)
    merges while closer than `threshold`, never across a cannot-link, with the Lance-Williams
    update of average linkage. Only pairs closer than `threshold` are kept: a merged cluster's
    distance to a third one is the weighted mean of its parts' distances, so it is below the
    threshold only when one part's is, and the merge looks at its parts' neighbours alone (the
    part that lacks a neighbour's distance has it measured from their members, at most SAMPLE
    of each). With `neighbours=None` (and clusters of up to SAMPLE rows) the result is
    `agglomerate`'s.

    Args:
        features: (N, D) embeddings.
        threshold: Clusters merge while their average distance is below this.
        cannot_link: (K, 2) pairs of rows that never end in one cluster.
        weights: (N,) how many members each row stands for (for clusters of clusters).
        neighbours: Candidate pairs found per row (`near_pairs`); None keeps all within threshold.

    Returns:
        (N,) int cluster labels, numbered in order of each cluster's first row.
    """
    n = len(features)
    if neighbours is not None and neighbours < 1:
        raise ValueError("neighbours must be at least 1 (or None)")
    if n == 0:
        return np.zeros(0, np.int64)
    x = np.asarray(features, np.float64)
    base = np.ones(n) if weights is None else np.asarray(weights, np.float64)
    size = base.tolist()
    forbid: dict[int, set[int]] = defaultdict(set)
    for a, b in np.asarray(list(cannot_link) if cannot_link is not None else [], np.int64).reshape(-1, 2).tolist():
        if a != b:
            forbid[a].add(b)
            forbid[b].add(a)
    lo, hi, dist = near_pairs(x, threshold, neighbours)
    nbr: list[dict[int, float]] = [{} for _ in range(n)]
    for a, b, d in zip(lo.tolist(), hi.tolist(), dist.tolist()):
        if a not in forbid or b not in forbid[a]:
            nbr[a][b] = d
            nbr[b][a] = d
    del lo, hi, dist
    # Each cluster's nearest neighbour (ties: the lowest), and a heap of them keyed as agglomerate
    # picks its pair: the smallest distance, then the lowest pair of rows. Outdated entries are
    # skipped when popped.
    best: list[tuple[float, int] | None] = [None] * n
    heap: list[tuple[float, int, int, int]] = []

    def nearest(c: int) -> None:
        near = nbr[c]
        if not near:
            best[c] = None
            return
        others, values = list(near), list(near.values())
        value = min(values)
        if values.count(value) == 1:
            other = others[values.index(value)]
        else:
            other = min(o for o, v in zip(others, values) if v == value)
        best[c] = (value, other)
        heapq.heappush(heap, (value, min(c, other), max(c, other), c))

    for c in range(n):
        nearest(c)
    members: dict[int, list[int]] = {}
    centred = x - x.mean(axis=0)
    sq = np.einsum("ij,ij->i", centred, centred)
    while heap:
        d, i, j, c = heapq.heappop(heap)
        if best[c] != (d, i + j - c):
            continue  # a merged cluster, or a nearest neighbour since replaced
        # Merge j into i (i < j: the merged cluster keeps its lowest row, as in agglomerate).
        near_i, near_j = nbr[i], nbr[j]
        nbr[i], nbr[j] = {}, {}
        best[i] = best[j] = None
        del near_i[j], near_j[i]
        forbid_j = forbid.pop(j, set())
        if forbid_j:
            for c in forbid_j:
                forbid[c].discard(j)
                forbid[c].add(i)
            forbid[i] |= forbid_j
        forbid_i = forbid.get(i, set())
        for c in near_i:
            del nbr[c][i]
        for c in near_j:
            del nbr[c][j]
        touched = set(near_i) | set(near_j)
        around = sorted(touched - forbid_i)
        rows_i, rows_j = members.get(i, [i]), members.get(j, [j])
        lack_i = [c for c in around if c not in near_i]
        lack_j = [c for c in around if c not in near_j]
        if lack_i:
            measured = _mean_distances(centred, sq, base, rows_i, [members.get(c, [c]) for c in lack_i])
            near_i.update(zip(lack_i, measured))
        if lack_j:
            measured = _mean_distances(centred, sq, base, rows_j, [members.get(c, [c]) for c in lack_j])
            near_j.update(zip(lack_j, measured))
        wi, wj = size[i], size[j]
        merged_near: dict[int, float] = {}
        for c in around:
            value = (wi * near_i[c] + wj * near_j[c]) / (wi + wj)
            if value < threshold:
                merged_near[c] = value
                nbr[c][i] = value
        nbr[i] = merged_near
        size[i] = wi + wj
        # The neighbours' nearest: found again where it was i or j, else i's new distance may beat it.
        for c in touched:
            was = best[c]
            if was is None or was[1] == i or was[1] == j:
                nearest(c)
            elif c in merged_near and (merged_near[c], i) < was:
                best[c] = (merged_near[c], i)
                heapq.heappush(heap, (merged_near[c], i, c, c) if i < c else (merged_near[c], c, i, c))
        nearest(i)
        # Keep the longer list and extend it with the shorter (N log N in all).
        if len(rows_i) < len(rows_j):
            rows_i, rows_j = rows_j, rows_i
        rows_i.extend(rows_j)
        members[i] = rows_i
        members.pop(j, None)
        if len(heap) > 3 * n + 100_000:
            heap = [(b[0], min(c, b[1]), max(c, b[1]), c) for c, b in enumerate(best) if b is not None]
            heapq.heapify(heap)
    roots = np.arange(n)
    for root, rows in members.items():
        roots[rows] = root
    return _first_row_order(roots)


@dataclass(slots=True)
class TrackRef:
    """What clustering needs of one track."""

    key: str
    source_id: str
    shot_index: int
    start: int
    end: int
    embedding: np.ndarray


def co_visible_pairs(
    source_ids: Sequence[str], shot_indices: Sequence[int], starts: Sequence[int], ends: Sequence[int]
) -> np.ndarray:
    """(K, 2) int64 pairs a < b of tracks on screen at one time in one shot of one source."""
    by_shot: dict[tuple[str, int], list[int]] = defaultdict(list)
    for index, where in enumerate(zip(source_ids, shot_indices)):
        by_shot[where].append(index)
    begin, finish = np.asarray(starts, np.int64), np.asarray(ends, np.int64)
    found: list[np.ndarray] = []
    for members in by_shot.values():
        if len(members) < 2:
            continue
        rows = np.asarray(members)
        s, e = begin[rows], finish[rows]
        overlap = (s[:, None] < e[None, :]) & (s[None, :] < e[:, None])
        a, b = np.nonzero(np.triu(overlap, k=1))
        found.append(np.stack([rows[a], rows[b]], axis=1))
    if not found:
        return np.zeros((0, 2), np.int64)
    pairs = np.concatenate(found)
    return np.stack([pairs.min(axis=1), pairs.max(axis=1)], axis=1)


def cluster_embeddings(
    embeddings: np.ndarray,
    source_ids: Sequence[str],
    shot_indices: Sequence[int],
    starts: Sequence[int],
    ends: Sequence[int],
    threshold: float,
    *,
    neighbours: int | None = NEIGHBOURS,
    dense_max: int = DENSE_MAX_TRACKS,
) -> np.ndarray:
    """Identity labels for tracks given as columns: per source first, then across sources."""
    n = len(embeddings)
    if n == 0:
        return np.zeros(0, np.int64)
    emb = np.asarray(embeddings, np.float64)
    pairs = co_visible_pairs(source_ids, shot_indices, starts, ends)
    by_source: dict[str, list[int]] = defaultdict(list)
    for index, source in enumerate(source_ids):
        by_source[source].append(index)
    # Co-visible tracks share a source: hand each source its own pairs.
    pairs_of: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for a, b in pairs.tolist():
        pairs_of[source_ids[a]].append((a, b))
    local = np.empty(n, np.int64)
    centroids: list[np.ndarray] = []
    sizes: list[int] = []
    for source in sorted(by_source):
        members = np.asarray(by_source[source])
        position = {int(m): k for k, m in enumerate(members)}
        links = [(position[a], position[b]) for a, b in pairs_of.get(source, [])]
        if len(members) <= dense_max:
            forbid = np.zeros((len(members), len(members)), bool)
            for a, b in links:
                forbid[a, b] = forbid[b, a] = True
            labels = agglomerate(emb[members], threshold, forbid)
        else:
            labels = sparse_agglomerate(emb[members], threshold, links, neighbours=neighbours)
        first = len(centroids)
        local[members] = first + labels
        for label in range(int(labels.max()) + 1):
            group = members[labels == label]
            centroids.append(emb[group].mean(axis=0))
            sizes.append(len(group))
    group_links = {(int(local[a]), int(local[b])) for a, b in pairs.tolist()}
    global_labels = sparse_agglomerate(
        np.stack(centroids), threshold, sorted(group_links), np.asarray(sizes, np.float64), neighbours
    )
    return global_labels[local]


def cluster_tracks(
    tracks: list[TrackRef],
    threshold: float,
    *,
    neighbours: int | None = NEIGHBOURS,
    dense_max: int = DENSE_MAX_TRACKS,
) -> np.ndarray:
    """Identity labels for `tracks`: per source first, then across sources."""
    if not tracks:
        return np.zeros(0, np.int64)
    return cluster_embeddings(
        np.stack([t.embedding for t in tracks]),
        [t.source_id for t in tracks],
        [t.shot_index for t in tracks],
        [t.start for t in tracks],
        [t.end for t in tracks],
        threshold,
        neighbours=neighbours,
        dense_max=dense_max,
    )


def identity_name(keys: list[str]) -> str:
    """A stable id for a cluster: a hash of its first key (unchanged when later tracks join)."""
    return "face-" + hashlib.sha1(min(keys).encode()).hexdigest()[:12]


def assign_identities(run_dir: Path, threshold: float) -> pa.Table | None:
    """Cluster every kept face track of the run; write manifests/identities.parquet.

    clips.parquet is read a batch at a time and each track's embedding kept once, so memory
    follows the tracks, not the clips.

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
    # Clips (talk stage) are windows of tracks: cluster each track once, under its first key,
    # and give every clip of it the track's identity.
    track_of: dict[tuple, int] = {}
    keys: list[str] = []  # one per kept row
    row_track: list[int] = []
    first_keys: list[str] = []  # one per track, as the columns below
    sources: list[str] = []
    shots: list[int] = []
    starts: list[int] = []
    ends: list[int] = []
    vectors: list[np.ndarray] = []
    # A buffered stream decodes a batch at a time, not the whole row group (the file's, often).
    reader = pq.ParquetFile(clips_path, buffer_size=1 << 20, pre_buffer=False)
    for batch in reader.iter_batches(batch_size=8192, columns=wanted + optional):
        lengths = pc.fill_null(pc.list_value_length(batch.column("embedding")), 0)
        kept = pc.fill_null(pc.and_(pc.equal(batch.column("status"), "ok"), pc.greater(lengths, 0)), False)
        batch = batch.filter(kept)
        if batch.num_rows == 0:
            continue
        flat = pc.list_flatten(batch.column("embedding")).to_numpy(zero_copy_only=False)
        dims = pc.list_value_length(batch.column("embedding")).to_numpy(zero_copy_only=False)
        if (dims != dims[0]).any() or (vectors and vectors[0].shape[1] != dims[0]):
            raise ValueError(f"{clips_path}: face embeddings of different lengths")
        matrix = flat.reshape(batch.num_rows, int(dims[0]))
        columns = {name: batch.column(name).to_pylist() for name in batch.schema.names if name != "embedding"}
        fresh: list[int] = []
        for row, key in enumerate(columns["key"]):
            source, shot = columns["source_id"][row], int(columns["shot_index"][row])
            # Without a track_index column (face-stage runs) every row is its own track.
            track_id = (source, shot, columns["track_index"][row] if "track_index" in columns else key)
            track = track_of.get(track_id)
            if track is None:
                track = track_of[track_id] = len(first_keys)
                first_keys.append(key)
                sources.append(source)
                shots.append(shot)
                starts.append(int(columns["track_start_frame"][row]))
                ends.append(int(columns["track_end_frame"][row]))
                fresh.append(row)
            keys.append(key)
            row_track.append(track)
        if fresh:
            vectors.append(np.asarray(matrix[fresh], np.float64))
    emb = np.concatenate(vectors) if vectors else np.zeros((0, 0))
    vectors.clear()
    labels = cluster_embeddings(emb, sources, shots, starts, ends, threshold, neighbours=NEIGHBOURS)
    n_labels = int(labels.max()) + 1 if len(labels) else 0
    # Each identity's mean, its tracks' distances to it, its name, its track and source counts.
    counts = np.bincount(labels, minlength=n_labels)
    centroid = np.zeros((n_labels, emb.shape[1]))
    np.add.at(centroid, labels, emb)
    centroid /= np.maximum(counts, 1)[:, None]
    distance = np.linalg.norm(emb - centroid[labels], axis=1) if len(labels) else np.zeros(0)
    first_key: list[str | None] = [None] * n_labels
    source_sets: list[set[str]] = [set() for _ in range(n_labels)]
    for track, label in enumerate(labels.tolist()):
        key = first_keys[track]
        current = first_key[label]
        if current is None or key < current:
            first_key[label] = key
        source_sets[label].add(sources[track])
    name = [identity_name([k]) for k in first_key if k is not None]
    n_sources = [len(s) for s in source_sets]
    track_label = labels.tolist()
    label_of_row = [track_label[t] for t in row_track]
    table = pa.table(
        {
            "key": keys,
            "source_id": [sources[t] for t in row_track],
            "identity_id": [name[label] for label in label_of_row],
            "identity_tracks": [int(counts[label]) for label in label_of_row],
            "identity_sources": [n_sources[label] for label in label_of_row],
            "distance_to_centroid": [float(distance[t]) for t in row_track],
        },
        schema=IDENTITIES_SCHEMA,
    ).sort_by("key")
    atomic_write_table(manifests / IDENTITIES_FILE, table)
    return table
