"""WebDataset shard writer with size/count limits and publish-on-commit.

Shards are written under temp names and only renamed to `NNNNNN.tar` when the ledger commits
them, so a reader never sees a half-written shard and a killed run never leaves a sample that
the resume would write a second time.

The writer runs where the executor places it (docs/design/worker-shards.md): in the driver's
process for the in-process runner, in a Ray actor on a worker for the Ray runner. It reads each
sample's media from the work area and hashes the shard as it writes it; the driver gets back a
`WrittenShard` (temp path, sha256, size) and commits it with `commit_written` (a rename) and the
ledger, so that no media byte passes through the driver. With the run directory on object
storage the writer also uploads each closed shard under its final name, which no commit lists
yet (debris to recovery until one does).
"""

from __future__ import annotations

import hashlib
import io
import os
import socket
import tarfile
from collections.abc import Container, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from voxhear.pipeline.io import DISK_ERRNOS, disk_error, fsync_dir, temp_path_for

if TYPE_CHECKING:
    from voxhear.pipeline.records import ShotRecord


@dataclass(frozen=True)
class WrittenShard:
    """A closed shard under its temporary name, as the writer measured it while writing."""

    name: str
    tmp: str
    sha256: str
    bytes: int
    # The object's ETag where the writer also uploaded it (run directory on object storage).
    etag: str = ""


class _HashingFile:
    """The file a shard is written to, hashing what goes through (no second read to hash it)."""

    def __init__(self, handle: io.BufferedWriter) -> None:
        self.handle = handle
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.handle.write(data)
        self.digest.update(data)
        self.size += len(data)
        return len(data)

    def tell(self) -> int:
        return self.size


@dataclass
class _OpenShard:
    name: str
    tmp: Path
    tar: tarfile.TarFile
    handle: io.BufferedWriter
    hashing: _HashingFile
    samples: int = 0


class ShardWriterLike(Protocol):
    """What the sink needs of a writer: a `ShardWriter`, or a proxy of one in a Ray actor."""

    def add_samples(self, rows: Sequence[ShotRecord]) -> tuple[list[str], bool]: ...

    def close_current(self) -> None: ...

    def take_closed(self) -> list[WrittenShard]: ...

    def close(self) -> None:
        """Stop: nothing is written or uploaded after this returns (what was not taken is debris)."""
        ...


@dataclass
class ShardWriter:
    shards_dir: Path
    max_samples: int
    max_bytes: int
    next_number: int = 0
    # A run directory on object storage: each closed shard is also uploaded as shards/NAME there.
    upload_url: str = ""
    _current: _OpenShard | None = None
    _closed: list[WrittenShard] = field(default_factory=list)
    _remote: Any = None

    def add_samples(self, rows: Sequence[ShotRecord]) -> tuple[list[str], bool]:
        """Append each row's sample (its media read from the work area here, where the writer runs);
        returns the shard of each and whether a shard was closed (a commit is due)."""
        names = [self.add(row.key, row.shard_members()) for row in rows]
        return names, self.has_closed

    def add(self, key: str, members: dict[str, bytes]) -> str:
        """Append one sample (`{key}.{ext}` members, in order); return the shard it lands in."""
        if "." in key:
            raise ValueError(f"sample key {key!r} contains a dot; webdataset would split it")
        shard = self._current or self._open()
        try:
            for ext, data in members.items():
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                # Fixed metadata keeps shard bytes reproducible run to run.
                info.mtime, info.mode, info.uname, info.gname = 0, 0o644, "voxhear", "voxhear"
                shard.tar.addfile(info, io.BytesIO(data))
        except OSError as error:
            if error.errno in DISK_ERRNOS:
                raise disk_error(error, shard.tmp) from error
            raise
        shard.samples += 1
        name = shard.name
        if shard.samples >= self.max_samples or shard.hashing.tell() >= self.max_bytes:
            self.close_current()
        return name

    def _open(self) -> _OpenShard:
        self.shards_dir.mkdir(parents=True, exist_ok=True)
        name = f"{self.next_number:06d}.tar"
        self.next_number += 1
        tmp = temp_path_for(self.shards_dir / name)
        handle = open(tmp, "wb")
        hashing = _HashingFile(handle)
        tar = tarfile.open(fileobj=hashing, mode="w", format=tarfile.USTAR_FORMAT)  # type: ignore[call-overload]
        self._current = _OpenShard(name=name, tmp=tmp, handle=handle, hashing=hashing, tar=tar)
        return self._current

    def close_current(self) -> None:
        shard = self._current
        if shard is None:
            return
        try:
            shard.tar.close()
            shard.handle.flush()
            os.fsync(shard.handle.fileno())
            shard.handle.close()
        except OSError as error:
            if error.errno in DISK_ERRNOS:
                raise disk_error(error, shard.tmp) from error
            raise
        self._current = None
        written = WrittenShard(shard.name, str(shard.tmp), shard.hashing.digest.hexdigest(), shard.hashing.size)
        if self.upload_url:
            written = self._upload(written)
        self._closed.append(written)

    def _upload(self, written: WrittenShard) -> WrittenShard:
        from voxhear.pipeline import remote_run
        from voxhear.pipeline.stage import SystemFault

        if self._remote is None:
            self._remote = remote_run.open_filesystem(self.upload_url)
        fs, root = self._remote
        try:
            etag = remote_run.put_new_shard(fs, f"{root}/shards/{written.name}", written.tmp)
        except Exception as error:  # credentials, endpoint, permissions: the machine's, not an input's
            raise SystemFault(
                f"the shard writer on {socket.gethostname()} could not upload {written.name} to "
                f"{self.upload_url}/shards ({type(error).__name__}: {error}); every node that may run it needs the "
                "object store's credentials and endpoint (for S3: AWS_* variables, AWS_ENDPOINT_URL)"
            ) from error
        return WrittenShard(written.name, written.tmp, written.sha256, written.bytes, etag)

    @property
    def has_closed(self) -> bool:
        return bool(self._closed)

    def take_closed(self) -> list[WrittenShard]:
        """The shards closed since the last call, for the driver to commit (`commit_written`)."""
        closed, self._closed = self._closed, []
        return closed

    def close(self) -> None:
        """Close the open shard's file, unpublished (its temp file is debris to the next recovery)."""
        shard, self._current = self._current, None
        if shard is not None:
            shard.handle.close()


def commit_written(shards_dir: Path, written: Sequence[WrittenShard]) -> list[str]:
    """Rename closed shards onto their final names (the driver's part of publishing: no data is read)."""
    for shard in written:
        os.replace(shard.tmp, Path(shards_dir) / shard.name)
    if written:
        fsync_dir(Path(shards_dir))
    return [shard.name for shard in written]


def copy_members(
    tar: tarfile.TarFile, out: tarfile.TarFile, replace: Mapping[str, bytes] = {}, drop_keys: Container[str] = ()
) -> None:
    """Stream the members of shard `tar` into `out` (media never held in memory: shards run to
    `shards.max_megabytes`): a member named in `replace` gets those bytes, the samples whose key
    is in `drop_keys` are left out. The one copy loop of every pass that rewrites a shard."""
    for info in tar.getmembers():
        if info.name.partition(".")[0] in drop_keys:
            continue
        if info.name in replace:
            data = replace[info.name]
            info.size = len(data)
            out.addfile(info, io.BytesIO(data))
        else:
            out.addfile(info, tar.extractfile(info) if info.isfile() else None)
