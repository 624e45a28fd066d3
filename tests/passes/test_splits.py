"""Identity-disjoint splits: assignment, manifests and the shards' json rewritten in place."""

import io
import json
import tarfile

from voxhear.passes.splits import assign_splits, rewrite_shard_metadata


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


def _shard(path, samples):
    with tarfile.open(path, "w") as tar:
        for key, meta in samples.items():
            for ext, data in (("json", json.dumps(meta).encode()), ("self.flac", b"x" * 7)):
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


def test_shard_json_rewritten_once_and_other_members_untouched(tmp_path):
    path = tmp_path / "000000.tar"
    _shard(path, {"k1": {"split": "", "identity_id": ""}, "k2": {"split": "", "identity_id": ""}})
    by_key = {"k1": {"identity_id": "face-a", "split": "train"}, "k2": {"identity_id": "face-b", "split": "test"}}
    assert rewrite_shard_metadata(path, by_key)
    assert not rewrite_shard_metadata(path, by_key)  # idempotent: nothing left to change
    with tarfile.open(path) as tar:
        names = tar.getnames()
        meta = json.loads(tar.extractfile("k2.json").read())
        assert tar.extractfile("k1.self.flac").read() == b"x" * 7
    assert names == ["k1.json", "k1.self.flac", "k2.json", "k2.self.flac"]
    assert meta == {"split": "test", "identity_id": "face-b"}
