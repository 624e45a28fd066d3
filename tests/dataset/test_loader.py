"""The researchers' loader (voxhear.dataset.loader) on small synthetic shards written to the shard format.

The shards hold random arrays and noise, not faces or speech: these tests check plumbing
(alignment, padding, filtering, sharding across workers, agreement with Ray and Hugging Face
readers), and keep the originals so every window can be compared with what was written.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from torch.utils.data import DataLoader

from voxhear.dataset.loader import VoxHearWindows, collate_windows, expand_urls, read_sample
from voxhear.pipeline.records import AUDIO_TRACKS, STATE_NAMES

FPS, RATE, SPF = 25, 16_000, 640
VIDEO_PX = 32
# (frames, split) per synthetic clip; shards group them 2 + 2 + 1.
CLIP_PLAN = [(30, "train"), (47, "val"), (70, "train"), (55, "test"), (64, "train")]
SHARD_PLAN = [[0, 1], [2, 3], [4]]


@dataclass
class SyntheticClip:
    key: str
    split: str
    frames: dict[str, np.ndarray]
    audio: dict[str, np.ndarray]  # float32, exactly what a 24-bit FLAC reads back as
    members: dict[str, bytes]

    @property
    def n_frames(self) -> int:
        return len(self.frames["state"])


@dataclass
class SyntheticShards:
    folder: Path
    paths: list[Path]
    clips: dict[str, SyntheticClip]


def gray_level(frame: int) -> int:
    """The uniform grey of video frame `frame` in every synthetic clip, to check video alignment."""
    return (frame * 10) % 250


def synthetic_mp4(n_frames: int, folder: Path) -> bytes:
    pixels = np.stack([np.full((VIDEO_PX, VIDEO_PX, 3), gray_level(i), np.uint8) for i in range(n_frames)])
    path = folder / f"synthetic-{n_frames}.mp4"
    # Lossless H.264 so the grey levels survive; raw frames in keep the count exact. A file, not a
    # pipe: the mp4 muxer seeks back to write its index, as the pipeline's encoder does.
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
         "-s", f"{VIDEO_PX}x{VIDEO_PX}", "-r", str(FPS), "-i", "pipe:0", "-c:v", "libx264", "-preset", "ultrafast",
         "-qp", "0", "-pix_fmt", "yuv420p", "-an", str(path)],
        input=pixels.tobytes(), check=True)
    return path.read_bytes()


def flac_bytes(samples_24bit: np.ndarray) -> bytes:
    buf = io.BytesIO()
    # soundfile writes the top 24 bits of int32 data.
    sf.write(buf, (samples_24bit.astype(np.int32) << 8), RATE, format="FLAC", subtype="PCM_24")
    return buf.getvalue()


def synthetic_clip(index: int, n_frames: int, split: str, folder: Path) -> SyntheticClip:
    rng = np.random.default_rng(1000 + index)
    source_id = f"synthetic{index // 2:07d}"
    start_ms = 40 * 25 * index
    key = f"{source_id}-face{index % 2}-{start_ms:08d}"
    has_mesh = np.ones(n_frames, bool)
    has_mesh[3::7] = False
    if index == 2:
        has_mesh[20:45] = False  # a stretch without a face mesh, for min_valid
    landmarks = rng.random((n_frames, 478, 3), dtype=np.float32)
    blendshapes = rng.random((n_frames, 52), dtype=np.float32)
    pose = rng.normal(size=(n_frames, 6)).astype(np.float32)
    for array in (landmarks, blendshapes, pose):
        array[~has_mesh] = np.nan
    frames = {
        "frame": np.arange(n_frames, dtype=np.int32) + start_ms // 40,
        "state": (np.arange(n_frames) % 4).astype(np.uint8),
        "state_names": np.array(STATE_NAMES),
        # Clip and frame in one number, so a misplaced window shows.
        "asd": (index * 1000 + np.arange(n_frames)).astype(np.float32),
        "landmarks": landmarks,
        "blendshapes": blendshapes,
        "blendshape_names": np.array([f"synthetic{i}" for i in range(52)]),
        "pose": pose,
        "has_landmarks": has_mesh,
        "landmark_confidence": np.where(has_mesh, rng.random(n_frames), 0).astype(np.float32),
        "box": rng.random((n_frames, 4), dtype=np.float32) * 100,
        "crop_box": rng.random((n_frames, 4), dtype=np.float32) * 100,
    }
    stems = {t: rng.integers(-2**20, 2**20, n_frames * SPF) for t in ("self", "other", "background")}
    stems["mix"] = stems["self"] + stems["other"] + stems["background"]
    npz = io.BytesIO()
    np.savez_compressed(npz, **frames)
    meta = {"key": key, "source_id": source_id, "source_uri": f"synthetic://{source_id}", "split": split,
            "identity_id": f"synthetic-person-{index % 3}", "clip_start_frame": start_ms // 40,
            "clip_end_frame": start_ms // 40 + n_frames, "fps": FPS}
    words = [{"word": "synthetic", "start_s": 0.1, "end_s": 0.5, "speaker": "SPEAKER_00", "party": "self",
              "probability": 0.9}]
    members = {"mp4": synthetic_mp4(n_frames, folder), **{f"{t}.flac": flac_bytes(stems[t]) for t in AUDIO_TRACKS},
               "frames.npz": npz.getvalue(), "words.json": json.dumps(words).encode(),
               "json": json.dumps(meta).encode()}
    audio = {t: (stems[t] / 2**23).astype(np.float32) for t in AUDIO_TRACKS}
    return SyntheticClip(key=key, split=split, frames=frames, audio=audio, members=members)


def write_shard(path: Path, samples: list[tuple[str, dict[str, bytes]]]) -> Path:
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for key, members in samples:
            for name, data in members.items():
                info = tarfile.TarInfo(f"{key}.{name}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> SyntheticShards:
    folder = tmp_path_factory.mktemp("shards")
    # Scratch videos elsewhere: a directory of shards must hold only shards (Ray reads every file).
    scratch = tmp_path_factory.mktemp("videos")
    clips = [synthetic_clip(i, n, split, scratch) for i, (n, split) in enumerate(CLIP_PLAN)]
    paths = [write_shard(folder / f"{number:06d}.tar", [(clips[i].key, clips[i].members) for i in group])
             for number, group in enumerate(SHARD_PLAN)]
    return SyntheticShards(folder=folder, paths=paths, clips={c.key: c for c in clips})


def window_ids(dataset) -> list[tuple[str, int]]:
    return [(item["key"], item["window_start"]) for item in dataset]


def expected_window(clip: SyntheticClip, name: str, start: int, size: int) -> np.ndarray:
    """The written array `name` over frames [start, start + size), NaN as 0, zero-padded."""
    array = np.nan_to_num(clip.frames[name])
    out = np.zeros((size, *array.shape[1:]), array.dtype)
    piece = array[start:start + size]
    out[:len(piece)] = piece
    return out


def test_windows_line_up_with_what_was_written(shards):
    dataset = VoxHearWindows(str(shards.folder / "*.tar"), window_frames=20, hop_frames=15)
    items = list(dataset)
    # Full windows only: starts 0, 15, 30, ... while start + 20 fits in the clip.
    expected = sorted((c.key, s) for c in shards.clips.values() for s in range(0, c.n_frames - 20 + 1, 15))
    assert sorted((i["key"], i["window_start"]) for i in items) == expected
    for item in items:
        clip, start = shards.clips[item["key"]], item["window_start"]
        assert set(item["audio"]) == {"self", "other", "background", "mix"}
        for track, audio in item["audio"].items():
            assert audio.dtype == torch.float32 and audio.shape == (20 * SPF,)
            np.testing.assert_array_equal(audio.numpy(), clip.audio[track][start * SPF:(start + 20) * SPF])
        assert item["blendshapes"].shape == (20, 52) and item["blendshapes"].dtype == torch.float32
        assert item["pose"].shape == (20, 6) and item["landmarks"].shape == (20, 478, 3)
        assert item["state"].dtype == torch.int64 and item["valid"].dtype == torch.bool
        for name in ("blendshapes", "pose", "landmarks", "asd", "state"):
            np.testing.assert_array_equal(item[name].numpy(), expected_window(clip, name, start, 20))
        np.testing.assert_array_equal(item["valid"].numpy(), clip.frames["has_landmarks"][start:start + 20])
        assert not torch.isnan(item["landmarks"]).any()
        assert item["split"] == clip.split and item["identity_id"].startswith("synthetic-person-")
        assert item["length"] == 20


def test_partial_windows_are_padded_or_dropped(shards):
    padded = {(i["key"], i["window_start"]): i for i in VoxHearWindows(shards.paths, window_frames=40,
                                                                        drop_partial=False)}
    by_frames = {c.n_frames: c for c in shards.clips.values()}
    # 30 frames: shorter than the window, one padded window; 47: a full window and a padded tail.
    assert sorted(s for k, s in padded if k == by_frames[30].key) == [0]
    assert sorted(s for k, s in padded if k == by_frames[47].key) == [0, 40]
    short = padded[(by_frames[30].key, 0)]
    assert short["length"] == 30
    assert not short["valid"][30:].any()
    np.testing.assert_array_equal(short["valid"][:30].numpy(), by_frames[30].frames["has_landmarks"])
    assert short["audio"]["mix"].shape == (40 * SPF,)
    assert not short["audio"]["mix"][30 * SPF:].any()
    np.testing.assert_array_equal(short["audio"]["mix"][:30 * SPF].numpy(), by_frames[30].audio["mix"])
    assert not short["landmarks"][30:].any() and not short["state"][30:].any()
    tail = padded[(by_frames[47].key, 40)]
    assert tail["length"] == 7 and tail["valid"][7:].sum() == 0

    dropped = window_ids(VoxHearWindows(shards.paths, window_frames=40))
    assert by_frames[30].key not in {k for k, _ in dropped}
    assert sorted(s for k, s in dropped if k == by_frames[47].key) == [0]


def test_min_valid_skips_windows_without_faces(shards):
    everything = list(VoxHearWindows(shards.paths, window_frames=10))
    kept = window_ids(VoxHearWindows(shards.paths, window_frames=10, min_valid=0.5))
    # Clip 2 has no face mesh on frames 20-44: windows 20, 30 (and 40: 4 of 10) fall below half.
    low = {(i["key"], i["window_start"]) for i in everything if i["valid"].float().mean() < 0.5}
    assert len(low) == 3
    assert set(kept) == {(i["key"], i["window_start"]) for i in everything} - low


def test_split_filter(shards):
    val = {k for k, _ in window_ids(VoxHearWindows(shards.paths, window_frames=10, split="val"))}
    assert val == {c.key for c in shards.clips.values() if c.split == "val"}
    assert window_ids(VoxHearWindows(shards.paths, window_frames=10, split="nonexistent")) == []


def test_shuffle_is_deterministic_per_seed_and_epoch(shards):
    def order(**kwargs) -> list[tuple[str, int]]:
        return window_ids(VoxHearWindows(str(shards.folder / "*.tar"), window_frames=10, shuffle_buffer=6, **kwargs))

    first = order(seed=0)
    assert order(seed=0) == first
    assert order(seed=1) != first
    dataset = VoxHearWindows(str(shards.folder / "*.tar"), window_frames=10, shuffle_buffer=6, seed=0)
    dataset.set_epoch(1)
    next_epoch = window_ids(dataset)
    assert next_epoch != first and next_epoch == order(seed=0, epoch=1)
    in_order = window_ids(VoxHearWindows(str(shards.folder / "*.tar"), window_frames=10))
    assert first != in_order and sorted(first) == sorted(next_epoch) == sorted(in_order)


def test_dataloader_workers_and_nodes_see_every_window_once(shards, monkeypatch):
    reference = sorted(window_ids(VoxHearWindows(shards.paths, window_frames=10)))
    dataset = VoxHearWindows(shards.paths, window_frames=10, shuffle_buffer=4, seed=3, epoch=2)
    loader = DataLoader(dataset, batch_size=4, num_workers=2, collate_fn=collate_windows)
    seen = [(k, int(s)) for batch in loader for k, s in zip(batch["key"], batch["window_start"])]
    assert sorted(seen) == reference

    # Two nodes (webdataset reads RANK and WORLD_SIZE): disjoint halves that cover everything.
    per_node = []
    for rank in (0, 1):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        per_node.append(window_ids(dataset))
    assert per_node[0] and per_node[1]
    assert sorted(per_node[0] + per_node[1]) == reference


def test_collate_windows_batches(shards):
    items = list(VoxHearWindows(shards.paths, window_frames=10, tracks=("mix", "self")))[:3]
    batch = collate_windows(items)
    assert batch["audio"]["mix"].shape == (3, 10 * SPF) and set(batch["audio"]) == {"mix", "self"}
    assert batch["landmarks"].shape == (3, 10, 478, 3) and batch["valid"].shape == (3, 10)
    assert batch["window_start"].tolist() == [i["window_start"] for i in items]
    assert batch["key"] == [i["key"] for i in items]


def test_video_windows_are_aligned(shards):
    # The one val clip has 47 frames.
    items = list(VoxHearWindows(shards.paths, split="val", window_frames=20, with_video=True))
    assert [i["window_start"] for i in items] == [0, 20]
    for item in items:
        video = item["video"]
        assert video.dtype == torch.uint8 and video.shape == (20, 3, VIDEO_PX, VIDEO_PX)
        levels = video.float().mean(dim=(1, 2, 3)).numpy()
        # Neighbouring frames differ by 10 grey levels, so a window off by one frame fails.
        want = [gray_level(item["window_start"] + i) for i in range(20)]
        np.testing.assert_allclose(levels, want, atol=3)
    resized = next(iter(VoxHearWindows(shards.paths, split="val", window_frames=20, with_video=True,
                                       video_size=(16, 24))))
    assert resized["video"].shape == (20, 3, 16, 24)


def test_missing_member_is_named(shards, tmp_path):
    clip = next(iter(shards.clips.values()))
    members = {name: data for name, data in clip.members.items() if name != "other.flac"}
    broken = write_shard(tmp_path / "broken.tar", [(clip.key, members)])
    with pytest.raises(ValueError, match=rf"{clip.key}.*other\.flac"):
        list(VoxHearWindows(str(broken)))
    with pytest.raises(ValueError, match=r"other\.flac"):
        read_sample(members)


def test_no_matching_shard_names_the_pattern(tmp_path):
    pattern = str(tmp_path / "nothing-*.tar")
    with pytest.raises(FileNotFoundError, match="nothing-"):
        VoxHearWindows(pattern)
    with pytest.raises(FileNotFoundError, match="missing-00000"):
        VoxHearWindows(str(tmp_path / "missing-{000000..000001}.tar"))


def test_url_forms_expand_to_the_same_shards(shards, monkeypatch):
    expected = [str(p) for p in shards.paths]
    monkeypatch.setenv("HOME", str(shards.folder.parent))
    assert expand_urls(f"~/{shards.folder.name}/*.tar") == expected
    assert expand_urls(str(shards.folder / "{000000..000002}.tar")) == expected
    assert expand_urls(shards.folder) == expected
    assert expand_urls(shards.paths) == expected


def test_read_sample_decodes_every_member(shards):
    clip = next(iter(shards.clips.values()))
    sample = read_sample(clip.members)
    assert sample["key"] == clip.key and sample["n_frames"] == clip.n_frames
    assert sample["words"][0]["word"] == "synthetic" and sample["meta"]["split"] == clip.split
    np.testing.assert_array_equal(sample["frames"]["landmarks"], clip.frames["landmarks"])
    np.testing.assert_array_equal(sample["audio"]["background"], clip.audio["background"])
    assert sample["mp4"] == clip.members["mp4"]


def decoded_by_ray(shards: SyntheticShards, tmp_path: Path) -> dict[str, dict[str, np.ndarray]]:
    ray = pytest.importorskip("ray")
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        # decoder=None: raw bytes per member; columns are named by everything after the key's dot.
        rows = ray.data.read_webdataset([str(p) for p in shards.paths], decoder=None).take_all()
    finally:
        if started:
            ray.shutdown()
    out = {}
    for row in rows:
        with np.load(io.BytesIO(row["frames.npz"])) as npz:
            arrays = {name: npz[name] for name in npz.files}
        for track in AUDIO_TRACKS:
            arrays[track] = sf.read(io.BytesIO(row[f"{track}.flac"]), dtype="float32")[0]
        out[row["__key__"]] = arrays
    return out


def decoded_by_hf_datasets(shards: SyntheticShards, tmp_path: Path) -> dict[str, dict[str, np.ndarray]]:
    datasets = pytest.importorskip("datasets")
    table = datasets.load_dataset("webdataset", data_files={"train": [str(p) for p in shards.paths]},
                                  split="train", cache_dir=str(tmp_path / "hf-cache"))
    out = {}
    for row in table:
        # Hugging Face decodes the npz into nested lists; the written dtypes restore the arrays.
        written = shards.clips[row["__key__"]].frames
        arrays = {name: np.asarray(values, dtype=written[name].dtype) for name, values in row["frames.npz"].items()}
        for track in AUDIO_TRACKS:
            decoded = row[f"{track}.flac"].get_all_samples()
            assert decoded.sample_rate == RATE
            arrays[track] = decoded.data.numpy()[0]
        out[row["__key__"]] = arrays
    return out


@pytest.mark.slow
@pytest.mark.parametrize("reader", [decoded_by_ray, decoded_by_hf_datasets], ids=["ray", "hf_datasets"])
def test_other_readers_see_what_the_loader_sees(shards, tmp_path, reader):
    longest = max(c.n_frames for c in shards.clips.values())
    # One padded window per clip covering all of it: the loader's view of every whole clip.
    loaded = {i["key"]: i for i in VoxHearWindows(shards.paths, window_frames=longest, drop_partial=False)}
    decoded = reader(shards, tmp_path)
    assert set(decoded) == set(loaded) == set(shards.clips)
    for key, arrays in decoded.items():
        clip, item, n = shards.clips[key], loaded[key], shards.clips[key].n_frames
        for name, written in clip.frames.items():
            np.testing.assert_array_equal(arrays[name], written, err_msg=f"{key} {name}")
        for track in AUDIO_TRACKS:
            np.testing.assert_array_equal(arrays[track], clip.audio[track], err_msg=f"{key} {track}")
            np.testing.assert_array_equal(item["audio"][track][:n * SPF].numpy(), arrays[track])
        for name in ("landmarks", "blendshapes", "pose", "asd", "state"):
            np.testing.assert_array_equal(item[name][:n].numpy(), np.nan_to_num(arrays[name]).astype(
                item[name].numpy().dtype))
        np.testing.assert_array_equal(item["valid"][:n].numpy(), arrays["has_landmarks"])


def test_audio_of_the_wrong_length_is_named(shards, tmp_path):
    clip = next(iter(shards.clips.values()))
    short_mix = flac_bytes((clip.audio["mix"][:-SPF] * 2**23).astype(np.int64))
    broken = write_shard(tmp_path / "short.tar", [(clip.key, {**clip.members, "mix.flac": short_mix})])
    with pytest.raises(ValueError, match=rf"{clip.key}.*mix\.flac has {(clip.n_frames - 1) * SPF} samples"):
        list(VoxHearWindows(str(broken)))


def test_format_2_shards_take_their_split_and_identity_from_the_run_index(shards, tmp_path, monkeypatch):
    """Shard format 2: the json has no split or identity; the loader reads them from the run's sample
    index, found beside the shards (RUN/shards -> RUN/manifests/samples.parquet) or given."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from voxhear.manifests.sample_index import SAMPLES_SCHEMA, sample_spans

    run = tmp_path / "run"
    (run / "shards").mkdir(parents=True)
    (run / "manifests").mkdir()
    rows, paths = [], []
    for number, group in enumerate(SHARD_PLAN):
        samples = []
        for i in group:
            clip = list(shards.clips.values())[i]
            meta = json.loads(clip.members["json"])
            meta.pop("split"), meta.pop("identity_id")
            samples.append((clip.key, {**clip.members, "json": json.dumps({**meta, "shard_format": 2}).encode()}))
        path = write_shard(run / "shards" / f"{number:06d}.tar", samples)
        paths.append(path)
        # The index swaps the json's old labels, so that only the index can have given them.
        for key, offset, length in sample_spans(path):
            split = {"train": "val", "val": "test", "test": "train"}[shards.clips[key].split]
            rows.append({"key": key, "shard": path.name, "split": split, "identity_id": f"from-index-{key}",
                         "offset": offset, "length": length, "shard_sha256": ""})
    index = run / "manifests" / "samples.parquet"
    pq.write_table(pa.Table.from_pylist(rows, SAMPLES_SCHEMA), index)
    wanted = {r["key"] for r in rows if r["split"] == "val"}
    for dataset in (VoxHearWindows(paths, window_frames=10, split="val"),
                    VoxHearWindows(run / "shards", window_frames=10, split="val")):
        items = list(dataset)
        assert {item["key"] for item in items} == wanted
        assert all(item["split"] == "val" and item["identity_id"] == f"from-index-{item['key']}" for item in items)
    # Elsewhere, without an index: asking for a split is an error that says where splits are.
    alone = tmp_path / "alone"
    shutil.copytree(run / "shards", alone)
    with pytest.raises(ValueError, match="samples.parquet"):
        list(VoxHearWindows(alone, window_frames=10, split="val"))
    assert {i["key"] for i in VoxHearWindows(alone, window_frames=10, split="val", index=index)} == wanted
    # Without a split asked for, it reads everything, labels unknown.
    assert {i["key"] for i in VoxHearWindows(alone, window_frames=10)} == set(shards.clips)
    # An index that lacks a sample of the shards (older than them, or another run's) is an error,
    # never a silent fallback to the json.
    stale = tmp_path / "stale.parquet"
    pq.write_table(pa.Table.from_pylist(rows[1:], SAMPLES_SCHEMA), stale)
    with pytest.raises(ValueError, match="not in the sample index"):
        list(VoxHearWindows(alone, window_frames=10, index=stale))
    # Shards named by relative paths find the index beside them too.
    relative = [str(p.relative_to(tmp_path)) for p in paths]
    monkeypatch.chdir(tmp_path)
    assert {i["key"] for i in VoxHearWindows(relative, window_frames=10, split="val")} == wanted
