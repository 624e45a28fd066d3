"""Identity clustering at scale (issue 18): the sparse steps against the old dense, exact ones."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from voxhear.passes.identities import (
    TrackRef,
    agglomerate,
    assign_identities,
    cluster_tracks,
    co_visible_pairs,
    near_pairs,
    sparse_agglomerate,
)

THRESHOLD = 0.47


def _dense_cluster_tracks(tracks: list[TrackRef], threshold: float) -> np.ndarray:
    """The clustering as it was before issue 18: N x N cannot-links, dense steps at both levels."""
    n = len(tracks)
    forbid = np.zeros((n, n), bool)
    for a in range(n):
        for b in range(n):
            ta, tb = tracks[a], tracks[b]
            same_shot = (ta.source_id, ta.shot_index) == (tb.source_id, tb.shot_index)
            if a != b and same_shot and ta.start < tb.end and tb.start < ta.end:
                forbid[a, b] = True
    emb = np.stack([t.embedding for t in tracks]).astype(np.float64)
    local = np.empty(n, np.int64)
    groups: list[list[int]] = []
    for source in sorted({t.source_id for t in tracks}):
        members = [i for i, t in enumerate(tracks) if t.source_id == source]
        labels = agglomerate(emb[members], threshold, forbid[np.ix_(members, members)])
        for label in range(int(labels.max()) + 1):
            group = [members[k] for k in np.nonzero(labels == label)[0]]
            local[group] = len(groups)
            groups.append(group)
    centroids = np.stack([emb[g].mean(axis=0) for g in groups])
    sizes = np.array([len(g) for g in groups], np.float64)
    group_forbid = np.array([[a != b and forbid[np.ix_(ga, gb)].any() for b, gb in enumerate(groups)]
                             for a, ga in enumerate(groups)])
    return agglomerate(centroids, threshold, group_forbid, sizes)[local]


def _synthetic_tracks(seed: int, identities: int = 30, sources: int = 8) -> tuple[list[TrackRef], np.ndarray]:
    """Tracks of `identities` people over `sources` videos, 2-4 people a shot on screen together.

    dlib-like scale: people about 0.8 apart, one person's tracks about 0.15 apart (threshold 0.47).
    """
    rng = np.random.default_rng(seed)
    offset = rng.normal(0, 0.12, 128)
    centres = offset + rng.normal(0, 0.05, (identities, 128))
    tracks, truth = [], []
    for s in range(sources):
        cast = rng.choice(identities, 8, replace=False)
        for shot in range(6):
            on_screen = rng.choice(cast, int(rng.integers(1, 4)), replace=False)
            for person in on_screen.tolist():
                start = int(rng.integers(0, 20))
                emb = centres[person] + rng.normal(0, 0.0066, 128)
                tracks.append(TrackRef(f"s{s}-face{len(tracks)}-{start:08d}", f"s{s}", shot, start, start + 50, emb))
                truth.append(person)
    return tracks, np.asarray(truth)


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    return np.array_equal(a[:, None] == a[None, :], b[:, None] == b[None, :])


@pytest.mark.parametrize("seed", range(3))
def test_cross_source_step_gives_the_old_exact_clustering_on_clear_clusters(seed):
    tracks, truth = _synthetic_tracks(seed)
    old = _dense_cluster_tracks(tracks, THRESHOLD)
    assert _same_partition(old, truth)  # the example is clear: the exact clustering is the truth
    assert np.array_equal(cluster_tracks(tracks, THRESHOLD), old)
    # Few candidate neighbours, and every source through the sparse path: the same all the same.
    assert np.array_equal(cluster_tracks(tracks, THRESHOLD, neighbours=3, dense_max=2), old)


@pytest.mark.parametrize("seed", range(40))
def test_sparse_agglomerate_is_the_dense_one_when_every_near_pair_is_kept(seed):
    """Points near the threshold of one another, weights and cannot-links: the very same merges."""
    rng = np.random.default_rng(seed)
    n, dim = int(rng.integers(2, 90)), int(rng.integers(1, 6))
    centres = rng.normal(0, 1, (max(1, n // 5), dim))
    x = centres[rng.integers(0, len(centres), n)] + rng.normal(0, 0.3, (n, dim))
    weights = rng.integers(1, 5, n).astype(float) if seed % 2 else None
    threshold = float(rng.uniform(0.3, 1.5))
    pairs = rng.integers(0, n, (n // 4, 2))
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    forbid = np.zeros((n, n), bool)
    forbid[pairs[:, 0], pairs[:, 1]] = forbid[pairs[:, 1], pairs[:, 0]] = True
    dense = agglomerate(x, threshold, forbid, weights)
    assert np.array_equal(sparse_agglomerate(x, threshold, pairs, weights, neighbours=None), dense)


def test_cannot_links_hold_across_levels_and_paths():
    """Twins on screen together stay two people; a third video of one of them joins only one."""
    rng = np.random.default_rng(7)
    face = rng.normal(0, 0.1, 128)

    def near() -> np.ndarray:
        return face + rng.normal(0, 0.001, 128)

    tracks = [TrackRef("s0-face0-00000000", "s0", 0, 0, 50, near()),
              TrackRef("s0-face1-00000010", "s0", 0, 10, 60, near()),  # on screen with face0
              TrackRef("s0-face2-00000100", "s0", 1, 100, 150, near())]
    tracks += [TrackRef(f"s{s}-face0-00000000", f"s{s}", 0, 0, 50, near()) for s in range(1, 5)]
    for kwargs in ({}, {"dense_max": 0}, {"dense_max": 0, "neighbours": 1}, {"neighbours": None}):
        labels = cluster_tracks(tracks, THRESHOLD, **kwargs)
        assert labels[0] != labels[1], kwargs
        assert len(set(labels.tolist())) == 2, kwargs
    assert np.array_equal(cluster_tracks(tracks, THRESHOLD), _dense_cluster_tracks(tracks, THRESHOLD))


def test_cannot_link_blocks_a_chain_in_sparse_agglomerate():
    points = np.array([[0.0], [0.1], [0.05], [5.0]])
    assert sparse_agglomerate(points, 1.0).tolist() == [0, 0, 0, 1]
    labels = sparse_agglomerate(points, 1.0, [(0, 1)])
    assert labels[0] != labels[1] and labels[2] in (labels[0], labels[1])
    assert np.array_equal(labels, agglomerate(points, 1.0, np.array([[0, 1, 0, 0], [1, 0, 0, 0], [0] * 4, [0] * 4], bool)))


def test_co_visible_pairs_are_per_shot_and_overlapping_in_time():
    pairs = co_visible_pairs(["a", "a", "a", "b", "a"], [0, 0, 0, 0, 1], [0, 40, 60, 0, 0], [50, 70, 90, 50, 50])
    # 0-1 and 1-2 overlap in shot a/0; 0-2 do not; b/0 and a/1 are other shots.
    assert sorted(map(tuple, pairs.tolist())) == [(0, 1), (1, 2)]


def test_near_pairs_keeps_each_rows_nearest_within_the_threshold():
    x = np.array([[0.0], [0.1], [0.2], [0.3], [5.0]])
    lo, hi, d = near_pairs(x, 0.25, neighbours=None)
    assert list(zip(lo.tolist(), hi.tolist())) == [(0, 1), (0, 2), (1, 2), (1, 3), (2, 3)]
    assert np.allclose(d, np.abs(x[lo, 0] - x[hi, 0]))
    lo, hi, _ = near_pairs(x, 0.25, neighbours=1)
    assert set(zip(lo.tolist(), hi.tolist())) <= {(0, 1), (0, 2), (1, 2), (1, 3), (2, 3)}
    assert len(lo) < 5


def test_assign_identities_reads_float32_embeddings_in_batches(tmp_path):
    """Over one read batch of rows, float32 lists, talk-style clips: one identity per person."""
    tracks, truth = _synthetic_tracks(3, identities=12, sources=40)
    rows = []
    for index, t in enumerate(tracks):
        for clip in range(20):  # the talk stage's several clips per track
            rows.append({"key": f"{t.key}-{clip}", "source_id": t.source_id, "status": "ok", "shot_index": t.shot_index,
                         "track_index": index, "track_start_frame": t.start, "track_end_frame": t.end,
                         "embedding": t.embedding.astype(np.float32).tolist()})
    rows.append({**rows[0], "key": "s0-filtered", "status": "filtered", "track_index": -1})
    assert len(rows) > 8192
    schema = pa.schema([(k, pa.list_(pa.float32()) if k == "embedding" else pa.array([v]).type)
                        for k, v in rows[0].items()])
    (tmp_path / "manifests").mkdir()
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), tmp_path / "manifests" / "clips.parquet")
    table = assign_identities(tmp_path, THRESHOLD)
    assert table.num_rows == len(rows) - 1
    assert table.column("key").to_pylist() == sorted(table.column("key").to_pylist())
    ids = dict(zip(table.column("key").to_pylist(), table.column("identity_id").to_pylist()))
    found = np.array([ids[f"{t.key}-0"] for t in tracks])
    assert _same_partition(found, truth)
    assert all(ids[f"{t.key}-{clip}"] == ids[f"{t.key}-0"] for t in tracks for clip in range(20))
    counts = dict(zip(table.column("identity_id").to_pylist(), table.column("identity_tracks").to_pylist()))
    assert counts[found[0]] == int((truth == truth[0]).sum())


@pytest.mark.parametrize("seed", range(3))
def test_near_pairs_is_the_union_of_each_rows_nearest_within_the_threshold(seed):
    """Rows with no, a few (sorted) and many (partitioned) close rows: against brute force."""
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.normal(0, 0.3, (60, 3)), rng.normal(3, 1.0, (240, 3))])
    threshold, k = 0.5, 5
    dist = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))
    np.fill_diagonal(dist, np.inf)
    expected = set()
    for row in range(len(x)):
        close = [c for c in np.argsort(dist[row], kind="stable")[:k].tolist() if dist[row, c] < threshold]
        expected |= {(min(row, c), max(row, c)) for c in close}
    counts = (dist < threshold).sum(1)
    assert (counts == 0).any() and ((counts > k) & (counts <= len(x) // 16)).any() and (counts > len(x) // 16).any()
    lo, hi, d = near_pairs(x, threshold, neighbours=k)
    assert set(zip(lo.tolist(), hi.tolist())) == expected
    assert np.allclose(d, dist[lo, hi])
