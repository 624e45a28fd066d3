"""Sample media for the galleries, read straight from the shards without unpacking them.

A WebDataset shard is a plain tar: every member's bytes lie contiguously at a known offset, so
one pass over the headers (no data read) gives `member -> (offset, size)`, and a clip is then
served or embedded with one seek. Stems a shard does not hold yet (today the separated
background and speech live only in the work area) are cut from the work-area files for the
clip's span and labelled as such.
"""

from __future__ import annotations

import io
import os
import re
import tarfile
import threading
from dataclasses import dataclass
from pathlib import Path

SHARD_NAME = re.compile(r"^\d{6}\.tar$")
VIDEO_EXTS = (".mp4", ".webm")
AUDIO_EXTS = (".flac", ".wav", ".mp3", ".ogg", ".opus", ".m4a")
MIME = {".mp4": "video/mp4", ".webm": "video/webm", ".flac": "audio/flac", ".wav": "audio/wav",
        ".mp3": "audio/mpeg", ".ogg": "audio/ogg", ".opus": "audio/ogg", ".m4a": "audio/mp4",
        ".json": "application/json", ".npz": "application/octet-stream", ".png": "image/png",
        ".jpg": "image/jpeg"}
# Listening order in the gallery; other audio members follow in shard order.
STEM_ORDER = ("mix", "self", "other", "background")


def mime_of(name: str) -> str:
    return MIME.get(os.path.splitext(name)[1].lower(), "application/octet-stream")


@dataclass(frozen=True)
class Member:
    shard: str
    name: str
    offset: int
    size: int

    @property
    def ext(self) -> str:
        """What follows the key: `mp4`, `flac`, `mix.flac`, `frames.npz`."""
        return self.name.split(".", 1)[1] if "." in self.name else ""


@dataclass(frozen=True)
class Track:
    """One playable thing of a sample: a label, its MIME type and where its bytes are."""

    label: str
    mime: str
    member: Member | None = None
    work_file: str = ""  # a work-area stem, cut to [start_s, end_s)
    start_s: float = 0.0
    end_s: float = 0.0

    @property
    def is_video(self) -> bool:
        return self.mime.startswith("video/")


class ShardIndex:
    """Member offsets of the shards of one run, indexed on first use of each shard."""

    def __init__(self, shards_dir: Path) -> None:
        self.shards_dir = Path(shards_dir)
        self._index: dict[str, tuple[int, dict[str, Member]]] = {}
        self._lock = threading.Lock()

    def shard_path(self, shard: str) -> Path:
        if not SHARD_NAME.match(shard):
            raise KeyError(f"not a shard name: {shard!r}")
        path = self.shards_dir / shard
        if not path.is_file():
            raise KeyError(f"no shard {shard}")
        return path

    def members(self, shard: str) -> dict[str, Member]:
        path = self.shard_path(shard)
        mtime = path.stat().st_mtime_ns
        with self._lock:
            cached = self._index.get(shard)
            if cached and cached[0] == mtime:
                return cached[1]
        found: dict[str, Member] = {}
        with tarfile.open(path, "r:") as tar:  # headers only: member data is never read here
            for info in tar:
                if info.isfile():
                    found[info.name] = Member(shard, info.name, info.offset_data, info.size)
        with self._lock:
            self._index[shard] = (mtime, found)
        return found

    def sample(self, shard: str, key: str) -> list[Member]:
        """Members `{key}.*` of one sample, in shard order."""
        prefix = key + "."
        return [m for name, m in self.members(shard).items() if name.startswith(prefix)]

    def read(self, member: Member, start: int = 0, length: int | None = None) -> bytes:
        length = member.size - start if length is None else length
        with open(self.shard_path(member.shard), "rb") as handle:
            handle.seek(member.offset + start)
            return handle.read(max(0, min(length, member.size - start)))


def sample_tracks(index: ShardIndex, clip: dict) -> list[Track]:
    """The video and the audio tracks to show for one clip row (kept clips come from the shard).

    Shard members first (the video, then mix/self/other/background and any other audio); stems
    missing from the shard are cut from the work area when the source row points at them.
    """
    tracks: list[Track] = []
    members: list[Member] = []
    if clip.get("shard"):
        try:
            members = index.sample(clip["shard"], clip["key"])
        except (KeyError, OSError, tarfile.TarError):
            members = []
    videos = [m for m in members if m.name.endswith(VIDEO_EXTS)]
    if videos:
        tracks.append(Track("video", mime_of(videos[0].name), member=videos[0]))
    else:
        for column in ("crop_video_uri", "segment_video_uri"):
            path = clip.get(column) or ""
            if path and os.path.isfile(path):
                tracks.append(Track("video (work area)", mime_of(path), work_file=path))
                break
    audio = [m for m in members if m.name.endswith(AUDIO_EXTS)]
    names = {_stem_name(m.ext): m for m in audio}
    if "audio" in names and "mix" not in names:  # today's single `{key}.flac` is the clip's mix
        names["mix"] = names.pop("audio")
    stem_of = {id(m): n for n, m in names.items()}
    ordered = [names[n] for n in STEM_ORDER if n in names] + [m for n, m in names.items() if n not in STEM_ORDER]
    for member in ordered:
        tracks.append(Track(stem_of[id(member)], mime_of(member.name), member=member))
    start, end = float(clip.get("clip_start_s", 0.0)), float(clip.get("clip_end_s", 0.0))
    if end > start:
        if "background" not in names and _exists(clip.get("background_uri")):
            tracks.append(Track("background (work area)", "audio/wav", work_file=clip["background_uri"],
                                start_s=start, end_s=end))
        if not ({"self", "other"} & set(names)) and _exists(clip.get("speech_uri")):
            tracks.append(Track("speech, all speakers (work area)", "audio/wav", work_file=clip["speech_uri"],
                                start_s=start, end_s=end))
    return tracks


def _stem_name(ext: str) -> str:
    """`mix.flac` -> mix; a bare `flac` (today's single audio member) -> audio."""
    return ext.rsplit(".", 1)[0] if "." in ext else "audio"


def _exists(path: str | None) -> bool:
    return bool(path) and os.path.isfile(path)


def track_bytes(index: ShardIndex, track: Track) -> bytes:
    """The whole content of a track (a shard member, a work file, or a cut stem as 16-bit WAV)."""
    if track.member is not None:
        return index.read(track.member)
    if track.end_s > track.start_s:
        return cut_wav(track.work_file, track.start_s, track.end_s)
    return Path(track.work_file).read_bytes()


def cut_wav(path: str, start_s: float, end_s: float) -> bytes:
    """[start_s, end_s) of an audio file as a 16-bit PCM WAV (small, and every browser plays it)."""
    import soundfile as sf

    with sf.SoundFile(path) as handle:
        rate = handle.samplerate
        handle.seek(min(int(start_s * rate), handle.frames))
        data = handle.read(max(0, int((end_s - start_s) * rate)), dtype="int16", always_2d=True)
    buffer = io.BytesIO()
    sf.write(buffer, data, rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()
