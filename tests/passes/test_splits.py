"""Identity-disjoint splits: the assignment (the pass itself: tests/manifests/test_verify_takedown.py)."""

from voxhear.passes.splits import assign_splits


def test_every_split_gets_an_identity_and_shares_follow_clip_time():
    seconds = {f"face-{i}": 10.0 for i in range(10)}
    split = assign_splits(seconds, 0.1, 0.1, seed=0)
    assert set(split) == set(seconds)
    counts = {s: sum(v == s for v in split.values()) for s in ("train", "val", "test")}
    assert counts == {"train": 8, "val": 1, "test": 1}


def test_assignment_is_seeded_and_stable():
    seconds = {f"face-{i}": float(i + 1) for i in range(7)}
    assert assign_splits(seconds, 0.2, 0.2, seed=3) == assign_splits(dict(reversed(seconds.items())), 0.2, 0.2, seed=3)
    assert assign_splits(seconds, 0.2, 0.2, seed=3) != assign_splits(seconds, 0.2, 0.2, seed=4)


def test_fewer_than_three_identities_all_train():
    assert set(assign_splits({"a": 1.0, "b": 2.0}, 0.1, 0.1).values()) == {"train"}
