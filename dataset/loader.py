"""Training-side reader of VoxHear shards: aligned windows of audio, face arrays and video.

The shard format is `docs/shard-format.md`; how to read shards with Ray or Hugging Face
`datasets` instead is `docs/loading.md`. `VoxHearWindows` cuts every clip into windows of
`window_frames` frames (25 fps) with the matching `window_frames * 640` samples of each
16 kHz audio track, so a batch holds the same instants in every modality.

Exactly-once per epoch with DataLoader workers and several nodes: every process computes the same
shard order from (seed, epoch) and then takes its own slice of it (webdataset's `split_by_node`,
then `split_by_worker`), so the slices are disjoint and together cover every shard.
"""

from __future__ import annotations

import functools
import glob
import io
import json
import os
import posixpath
import random
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import fsspec
import numpy as np
import pyarrow.parquet as pq
import soundfile as sf
import torch
import webdataset as wds
from torch.utils.data import IterableDataset

from voxhear.pipeline.records import AUDIO_TRACKS, STATE_NAMES

FPS = 25
SAMPLE_RATE = 16_000
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS  # 640
# Every member a sample must have (`{key}.{name}`), as the shard format lists them.
REQUIRED_MEMBERS = ("mp4", "json", "words.json", "frames.npz", *(f"{t}.flac" for t in AUDIO_TRACKS))
_GLOB_CHARS = set("*?[")


def read_sample(members: Mapping[str, Any], *, tracks: Sequence[str] = AUDIO_TRACKS) -> dict[str, Any]:
    """Decode one raw sample: its members by name (`json`, `mix.flac`, ...) as bytes.

    Accepts what webdataset's `tarfile_to_samples` yields (`__key__`, `__url__` are used for error
    messages) as well as a plain `{member: bytes}` dict. The mp4 is passed through undecoded.

    Args:
        members: the sample's members; names are the file names after the key and its dot.
        tracks: the audio tracks to decode (all four by default; the others are only checked to exist).

    Returns:
        `key`, `meta` (the json member), `words` (list of dicts), `frames` (name -> array, from
        frames.npz), `audio` (track -> float32 array of T * 640 samples), `n_frames` (T), `mp4` (bytes).

    Raises:
        ValueError: a member is missing, or the arrays and audio disagree on the clip's length.
    """
    key = str(members.get("__key__", ""))
    if not key and "json" in members:
        key = str(json.loads(members["json"]).get("key", ""))
    where = f"sample {key!r}" + (f" in {members['__url__']}" if "__url__" in members else "")
    missing = [name for name in REQUIRED_MEMBERS if name not in members]
    if missing:
        present = sorted(name for name in members if not name.startswith("__"))
        raise ValueError(f"{where} lacks members {missing} (present: {present})")
    unknown = [t for t in tracks if t not in AUDIO_TRACKS]
    if unknown:
        raise ValueError(f"unknown audio tracks {unknown}; the shards hold {list(AUDIO_TRACKS)}")

    with np.load(io.BytesIO(members["frames.npz"]), allow_pickle=False) as npz:
        frames = {name: npz[name] for name in npz.files}
    if "state" not in frames:
        raise ValueError(f"{where}: frames.npz has no 'state' array (has {sorted(frames)})")
    # The state codes mean what STATE_NAMES says only if the writer agrees.
    if "state_names" in frames and tuple(frames["state_names"].tolist()) != STATE_NAMES:
        raise ValueError(f"{where}: state_names {frames['state_names'].tolist()} differ from {list(STATE_NAMES)}")
    n_frames = len(frames["state"])
    for name, array in frames.items():
        # The name arrays are per channel, not per frame.
        if not name.endswith("_names") and len(array) != n_frames:
            raise ValueError(f"{where}: frames.npz '{name}' has {len(array)} rows, 'state' has {n_frames}")

    audio: dict[str, np.ndarray] = {}
    for track in tracks:
        samples, rate = sf.read(io.BytesIO(members[f"{track}.flac"]), dtype="float32", always_2d=False)
        if rate != SAMPLE_RATE or samples.ndim != 1:
            raise ValueError(
                f"{where}: {track}.flac is {rate} Hz with shape {samples.shape}, expected {SAMPLE_RATE} Hz mono"
            )
        if len(samples) != n_frames * SAMPLES_PER_FRAME:
            raise ValueError(
                f"{where}: {track}.flac has {len(samples)} samples, expected "
                f"{n_frames} frames * {SAMPLES_PER_FRAME} = {n_frames * SAMPLES_PER_FRAME}"
            )
        audio[track] = samples
    return {
        "key": key,
        "meta": json.loads(members["json"]),
        "words": json.loads(members["words.json"]),
        "frames": frames,
        "audio": audio,
        "n_frames": n_frames,
        "mp4": bytes(members["mp4"]),
    }


def decode_video(data: bytes, size: int | tuple[int, int] | None = None) -> np.ndarray:
    """All frames of an mp4 as a T×H×W×3 uint8 RGB array, optionally resized to `size` (H, W)."""
    import av  # Imported here: only with_video readers pay for it.

    height, width = (size, size) if isinstance(size, int) else (size or (None, None))
    frames = []
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            if size is None:
                frames.append(frame.to_ndarray(format="rgb24"))
            else:
                frames.append(frame.to_ndarray(format="rgb24", width=width, height=height))
    if not frames:
        return np.zeros((0, height or 0, width or 0, 3), np.uint8)
    return np.stack(frames)


def collate_windows(batch: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """DataLoader `collate_fn` for `VoxHearWindows`: stacks tensors, numbers become tensors,
    strings (keys, identities, splits) stay lists; nested dicts (`audio`) are collated per entry."""
    first = batch[0]
    out: dict[str, Any] = {}
    for name, value in first.items():
        values = [item[name] for item in batch]
        if isinstance(value, torch.Tensor):
            out[name] = torch.stack(values)
        elif isinstance(value, Mapping):
            out[name] = collate_windows(values)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[name] = torch.tensor(values)
        else:
            out[name] = values
    return out


def expand_urls(urls: str | os.PathLike | Iterable[str | os.PathLike]) -> list[str]:
    """Shard paths or URLs from a glob, a brace pattern, a directory (its `*.tar`) or a list.

    Raises:
        FileNotFoundError: no shard matches, naming the pattern (local paths only; remote URLs and
            `pipe:` commands are taken as given).
    """
    patterns = [os.fspath(urls)] if isinstance(urls, (str, os.PathLike)) else [os.fspath(u) for u in urls]
    shards: list[str] = []
    missing: list[str] = []
    for pattern in patterns:
        for item in wds.shardlists.expand_urls(pattern) if "{" in pattern else [pattern]:
            if "://" in item or item.startswith("pipe:"):
                shards.append(item)
                continue
            item = os.path.expanduser(item)
            if _GLOB_CHARS & set(item):
                shards.extend(sorted(glob.glob(item)))
            elif os.path.isdir(item):
                shards.extend(sorted(glob.glob(os.path.join(glob.escape(item), "*.tar"))))
            elif os.path.exists(item):
                shards.append(item)
            else:
                missing.append(item)
    if missing:
        raise FileNotFoundError(f"{len(missing)} shard(s) of {urls!r} do not exist, e.g. {missing[:3]}")
    if not shards:
        raise FileNotFoundError(f"no shard matches {urls!r}")
    return shards


def is_run_dir(location: str | os.PathLike) -> bool:
    """A pipeline run directory (a path, or a URL such as s3://bucket/run): it has manifests/clips.parquet."""
    text = _run_root(location)
    if text.endswith(".tar") or "{" in text or text.startswith("pipe:") or _GLOB_CHARS & set(text):
        return False
    fs, path = fsspec.core.url_to_fs(text)
    return bool(fs.exists(f"{path}/manifests/clips.parquet"))


def _run_root(run_dir: str | os.PathLike) -> str:
    """A run directory's path or URL, `~` expanded, without a trailing slash."""
    return os.path.expanduser(os.fspath(run_dir)).rstrip("/")


def run_shards(run_dir: str | os.PathLike, split: str | None = None) -> list[str]:
    """The shards of a run directory (path or URL) holding kept clips of `split` (every shard for None).

    Read from the run's manifests/clips.parquet (which clip is in which shard, and its split).
    """
    root = _run_root(run_dir)
    with fsspec.open(f"{root}/manifests/clips.parquet", "rb") as handle:
        table = pq.read_table(handle, columns=["status", "shard", *(["split"] if split is not None else [])])
    rows = [r for r in table.to_pylist() if r["status"] == "ok" and r["shard"]]
    if split is not None:
        rows = [r for r in rows if r["split"] == split]
    shards = sorted({r["shard"] for r in rows})
    if not shards:
        raise FileNotFoundError(f"no kept clip of split {split!r} in {root}/manifests/clips.parquet")
    return [f"{root}/shards/{name}" for name in shards]


def split_spans(run_dir: str | os.PathLike, split: str | None = None) -> dict[str, list[tuple[int, int]]] | None:
    """shard URL -> the byte spans (offset, length) of the samples of `split` in it, adjacent spans
    merged, from the run's sample index (manifests/samples.parquet); None for a run without one."""
    root = _run_root(run_dir)
    fs, path = fsspec.core.url_to_fs(f"{root}/manifests/samples.parquet")
    if not fs.exists(path):
        return None
    with fs.open(path, "rb") as handle:
        rows = pq.read_table(handle, columns=["shard", "split", "offset", "length"]).to_pylist()
    spans: dict[str, list[tuple[int, int]]] = {}
    for row in sorted(rows, key=lambda r: (r["shard"], r["offset"])):
        if split is not None and row["split"] != split:
            continue
        shard = spans.setdefault(f"{root}/shards/{row['shard']}", [])
        if shard and shard[-1][0] + shard[-1][1] == row["offset"]:
            shard[-1] = (shard[-1][0], shard[-1][1] + row["length"])
        else:
            shard.append((row["offset"], row["length"]))
    if not spans:
        raise FileNotFoundError(f"no sample of split {split!r} in {root}/manifests/samples.parquet")
    return spans


def sample_labels(index: str | os.PathLike, shards: Iterable[str] | None = None) -> dict[str, tuple[str, str]]:
    """key -> (identity_id, split) of the samples in a run's sample index (manifests/samples.parquet,
    a path or URL), only of the shards named (file names, `000012.tar`) when given. Shards of format 2
    do not carry these two labels (docs/shard-format.md)."""
    with fsspec.open(os.path.expanduser(os.fspath(index)), "rb") as handle:
        table = pq.read_table(handle, columns=["key", "shard", "identity_id", "split"])
    if shards is not None:
        import pyarrow as pa
        import pyarrow.compute as pc

        table = table.filter(pc.is_in(table.column("shard"), pa.array(sorted(set(shards)), pa.string())))
    return {k: (i, s) for k, i, s in zip(*(table.column(c).to_pylist() for c in ("key", "identity_id", "split")))}


def shard_name(url: str) -> str:
    """The file name of a shard given as a path, a URL (query string and all) or a `pipe:` command
    (its first word ending in .tar), as the sample index names shards."""
    if url.startswith("pipe:"):
        words = [w for w in url[5:].split() if w.split("?")[0].endswith(".tar")]
        url = words[0] if words else url
    if "://" in url:
        url = urlsplit(url).path
    return posixpath.basename(url.replace(os.sep, "/"))


def index_beside(shard_urls: Sequence[str]) -> str | None:
    """The sample index of the run the shards belong to (`RUN/shards/X.tar` -> `RUN/manifests/
    samples.parquet`), when they all lie in one run's shards folder and it exists; else None."""
    folders = {
        url.rsplit("/", 1)[0] if "://" in url else os.path.dirname(os.path.abspath(url))
        for url in shard_urls
        if not url.startswith("pipe:")
    }
    if len(folders) != 1 or len(shard_urls) == 0:
        return None
    folder = folders.pop()
    if folder.rsplit("/", 1)[-1] != "shards":
        return None
    candidate = f"{folder.rsplit('/', 1)[0]}/manifests/samples.parquet"
    fs, path = fsspec.core.url_to_fs(candidate)
    return candidate if fs.exists(path) else None


class _SpanReader(io.RawIOBase):
    """The bytes of `spans` of an open shard, one after another: the samples' tar entries, which
    read as a tar stream of just those samples (stream mode stops at the end of the last one)."""

    def __init__(self, handle: Any, spans: Sequence[tuple[int, int]]) -> None:
        self.handle, self.spans = handle, list(spans)
        self.index, self.done = 0, 0  # the span being read, and how much of it is read

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while self.index < len(self.spans):
            offset, length = self.spans[self.index]
            if self.done < length:
                self.handle.seek(offset + self.done)
                data = self.handle.read(min(len(buffer), length - self.done))
                if not data:
                    raise EOFError(f"the shard ends inside the span {offset}+{length} its sample index gives")
                buffer[: len(data)] = data
                self.done += len(data)
                return len(data)
            self.index, self.done = self.index + 1, 0
        return 0

    def close(self) -> None:
        self.handle.close()
        super().close()


def _open_shards(
    sources: Iterable[dict[str, Any]], spans: Mapping[str, Sequence[tuple[int, int]]] | None = None
) -> Iterator[dict[str, Any]]:
    """webdataset's url_opener, with URLs (s3://, gs://, https://) opened by fsspec (webdataset's own
    openers shell out to command-line tools and have none for s3://), and, for a shard in `spans`,
    only those byte spans read (ranged reads on object storage)."""
    for source in sources:
        url = source["url"]
        if spans is not None and url in spans:
            stream: Any = io.BufferedReader(_SpanReader(fsspec.open(url, "rb").open(), spans[url]), 1 << 20)
        else:
            stream = fsspec.open(url, "rb").open() if "://" in url else wds.gopen(url)
        yield {**source, "stream": stream}


def tar_samples(
    sources: Iterable[dict[str, Any]], spans: Mapping[str, Sequence[tuple[int, int]]] | None = None
) -> Iterator[dict[str, Any]]:
    """Raw samples ({"__key__", member: bytes, ...}) of the shards in `sources` ({"url": ...} each);
    of a shard in `spans`, only the samples in those byte spans."""
    return wds.tariterators.group_by_keys(wds.tariterators.tar_file_expander(_open_shards(sources, spans)))


def _window(array: np.ndarray, start: int, length: int) -> np.ndarray:
    """`array[start:start + length]` as a fresh array, zero-padded past the array's end.

    A copy rather than a view, so a window in the shuffle buffer or in another process does not
    keep its whole clip alive.
    """
    out = np.zeros((length, *array.shape[1:]), array.dtype)
    piece = array[start : start + length]
    out[: len(piece)] = piece
    return out


class VoxHearWindows(IterableDataset):
    """Windows of `window_frames` frames from VoxHear shards, aligned across modalities.

    Each item: `key`, `window_start` (frame offset in the clip), `length` (real frames in the
    window; less than T only in a padded window), `identity_id`, `split`, `audio` ({track: float32
    tensor of T*640 samples}), `blendshapes` (T×52), `pose` (T×6), `landmarks` (T×478×3),
    `valid` (T bool: a face mesh was found and the frame is in the clip), `state` (T int64, codes
    of `STATE_NAMES`), `asd` (T float32) and, with `with_video`, `video` (T×3×H×W uint8). NaN in
    blendshapes, pose and landmarks (frames without a mesh) becomes 0: mask with `valid`.

    Args:
        urls: a glob (`~` allowed), a brace pattern, a directory of `.tar` shards, a list of shard
            paths or URLs (s3://, gs://, https:// are read with fsspec), or a pipeline run
            directory (a path or URL such as s3://bucket/run), whose manifests name the shards
            holding the requested split, so that only those are opened.
        split: keep only clips of this split (`train`, `val`, `test`); None keeps all. A sample's
            split and identity come from the run's sample index (see `index`); shards of format 1
            without an index give their json's.
        index: the run's sample index (manifests/samples.parquet, a path or URL); by default the
            run directory's, or the one beside the shards (`RUN/shards/` -> `RUN/manifests/`).
        window_frames: T, frames per window.
        hop_frames: frames between window starts; None means `window_frames` (no overlap).
        tracks: the audio tracks to return.
        with_video: decode the mp4 (PyAV) and return `video`.
        video_size: resize frames to this (an int for square, or (H, W)); None keeps the crop size.
        shuffle_buffer: 0 reads in shard order; above 0 shuffles the shard order and the windows
            through a buffer of this many windows, both deterministic given (seed, epoch).
        seed: shuffling seed.
        epoch: the epoch the shuffles are drawn for; `set_epoch` changes it.
        min_valid: skip windows whose share of valid frames (padding counts as not valid) is below this.
        drop_partial: skip windows that would run past the clip's end (a clip shorter than the
            window, and the tail of a longer clip); when False that one window per clip is
            zero-padded instead, with `valid` False on the padding.
    """

    def __init__(
        self,
        urls: str | os.PathLike | Iterable[str | os.PathLike],
        *,
        split: str | None = None,
        window_frames: int = 50,
        hop_frames: int | None = None,
        tracks: Sequence[str] = ("self", "other", "background", "mix"),
        with_video: bool = False,
        video_size: int | tuple[int, int] | None = None,
        shuffle_buffer: int = 0,
        seed: int = 0,
        epoch: int = 0,
        min_valid: float = 0.0,
        drop_partial: bool = True,
        index: str | os.PathLike | None = None,
    ) -> None:
        super().__init__()
        hop_frames = window_frames if hop_frames is None else hop_frames
        if window_frames < 1 or hop_frames < 1:
            raise ValueError(f"window_frames ({window_frames}) and hop_frames ({hop_frames}) must be positive")
        unknown = [t for t in tracks if t not in AUDIO_TRACKS]
        if unknown:
            raise ValueError(f"unknown audio tracks {unknown}; the shards hold {list(AUDIO_TRACKS)}")
        # Resolved now, in the main process, so a bad pattern fails before any worker starts.
        # A run directory: only the split's samples (their byte spans, from the sample index).
        self.spans: dict[str, list[tuple[int, int]]] | None = None
        if isinstance(urls, (str, os.PathLike)) and is_run_dir(urls):
            self.spans = split_spans(urls, split)
            self.urls = sorted(self.spans) if self.spans is not None else run_shards(urls, split)
            if index is None and self.spans is not None:
                index = f"{_run_root(urls)}/manifests/samples.parquet"
        else:
            self.urls = expand_urls(urls)
            if index is None:
                index = index_beside(self.urls)
        # key -> (identity_id, split); None: take them from each sample's json (format 1).
        # (Only those of the shards to read: an index of a large run holds millions of keys.)
        self.index = None if index is None else os.fspath(index)
        self.labels = None
        if self.index is not None:
            self.labels = sample_labels(self.index, {shard_name(url) for url in self.urls})
            if not self.labels:  # shards named otherwise than in the index (copied, renamed): all of it
                self.labels = sample_labels(self.index)
        self.split = split
        self.window_frames = window_frames
        self.hop_frames = hop_frames
        self.tracks = tuple(tracks)
        self.with_video = with_video
        self.video_size = video_size
        self.shuffle_buffer = shuffle_buffer
        self.seed = seed
        self.epoch = epoch
        self.min_valid = min_valid
        self.drop_partial = drop_partial

    def set_epoch(self, epoch: int) -> None:
        """Draw the next iteration's shuffles for `epoch`.

        DataLoader workers get a copy of the dataset when an iteration starts, so call this before
        iterating; with `persistent_workers=True` the workers keep the epoch they started with.
        """
        self.epoch = epoch

    def shard_order(self) -> list[str]:
        """This epoch's shard order, the same in every process (the split happens after it)."""
        urls = list(self.urls)
        if self.shuffle_buffer > 0:
            random.Random(f"voxhear-shards:{self.seed}:{self.epoch}").shuffle(urls)
        return urls

    def __iter__(self) -> Iterator[dict[str, Any]]:
        stages: list[Any] = [
            wds.SimpleShardList(self.shard_order()),
            wds.split_by_node,
            wds.split_by_worker,
            functools.partial(tar_samples, spans=self.spans),
            self._clip_windows,
        ]
        if self.shuffle_buffer > 0:
            rank, _, worker, _ = wds.utils.pytorch_worker_info()
            rng = random.Random(f"voxhear-windows:{self.seed}:{self.epoch}:{rank}:{worker}")
            stages.append(wds.shuffle(self.shuffle_buffer, initial=self.shuffle_buffer, rng=rng))
        return iter(wds.DataPipeline(*stages))

    def _clip_windows(self, samples: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for raw in samples:
            # Filter on the labels alone before decoding anything heavy; read_sample names missing members.
            identity, split = self._labels_of(raw)
            if self.split is not None and split != self.split:
                continue
            sample = read_sample(raw, tracks=self.tracks)
            sample["meta"].update(identity_id=identity, split=split)
            yield from self.windows_of(sample)

    def _labels_of(self, raw: Mapping[str, Any]) -> tuple[str | None, str | None]:
        """(identity_id, split) of a raw sample: the index's, else (no index) its json's (format 1)."""
        key = str(raw.get("__key__", ""))
        if self.labels is not None:
            if key not in self.labels:
                # Never the json instead: a format-1 json's labels are stale once a resumed run
                # re-assigned the splits, and format 2 has none.
                raise ValueError(
                    f"sample {key!r} of {raw.get('__url__', 'a shard')} is not in the sample index {self.index}: "
                    "the index is older than the shards (`voxhear verify --reindex RUN` rewrites it) or is "
                    "another run's"
                )
            return self.labels[key]
        meta = json.loads(raw["json"]) if "json" in raw else {}
        if self.split is not None and "split" not in meta:
            raise ValueError(
                f"sample {key!r} of {raw.get('__url__', 'a shard')} has no split in its json (shard format "
                f"{meta.get('shard_format')}): splits are in the run's manifests/samples.parquet; pass the run "
                "directory, shards inside RUN/shards, or index=RUN/manifests/samples.parquet"
            )
        return meta.get("identity_id"), meta.get("split")

    def window_starts(self, n_frames: int) -> list[int]:
        """Start frames of the windows of a clip of `n_frames` frames."""
        size, hop = self.window_frames, self.hop_frames
        starts = [s for s in range(0, n_frames, hop) if s + size <= n_frames]
        # One padded window from the first start past the last full one reaches the clip's end.
        tail = starts[-1] + hop if starts else 0
        if not self.drop_partial and tail < n_frames and tail + size > n_frames:
            starts.append(tail)
        return starts

    def windows_of(self, sample: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """The windows of one decoded sample (as `read_sample` returns it)."""
        n_frames, frames, meta = sample["n_frames"], sample["frames"], sample["meta"]
        starts = self.window_starts(n_frames)
        if not starts:
            return
        size = self.window_frames
        valid = frames["has_landmarks"].astype(bool)
        arrays = {
            "blendshapes": np.nan_to_num(frames["blendshapes"].astype(np.float32), nan=0.0),
            "pose": np.nan_to_num(frames["pose"].astype(np.float32), nan=0.0),
            "landmarks": np.nan_to_num(frames["landmarks"].astype(np.float32), nan=0.0),
            "state": frames["state"].astype(np.int64),
            "asd": frames["asd"].astype(np.float32),
        }
        video = None
        if self.with_video:
            video = decode_video(sample["mp4"], self.video_size)
            if len(video) != n_frames:
                raise ValueError(f"sample {sample['key']!r}: mp4 has {len(video)} frames, frames.npz has {n_frames}")
        for start in starts:
            window_valid = _window(valid, start, size)
            if window_valid.mean() < self.min_valid:
                continue
            item: dict[str, Any] = {
                "key": sample["key"],
                "window_start": start,
                "length": min(size, n_frames - start),
                "identity_id": meta.get("identity_id"),
                "split": meta.get("split"),
                "audio": {
                    track: torch.from_numpy(
                        _window(sample["audio"][track], start * SAMPLES_PER_FRAME, size * SAMPLES_PER_FRAME)
                    )
                    for track in self.tracks
                },
                "valid": torch.from_numpy(window_valid),
            }
            for name, array in arrays.items():
                item[name] = torch.from_numpy(_window(array, start, size))
            if video is not None:
                item["video"] = torch.from_numpy(_window(video, start, size)).permute(0, 3, 1, 2).contiguous()
            yield item


__all__ = [
    "VoxHearWindows",
    "collate_windows",
    "read_sample",
    "decode_video",
    "expand_urls",
    "run_shards",
    "split_spans",
    "sample_labels",
    "STATE_NAMES",
]
