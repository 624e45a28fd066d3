"""WebDataset shard writer with size/count limits and publish-on-commit.

Shards are written under temp names and only renamed to `NNNNNN.tar` when the ledger commits
them, so a reader never sees a half-written shard and a killed run never leaves a sample that
the resume would write a second time.
"""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Container, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from voxhear.pipeline.io import DISK_ERRNOS, disk_error, fsync_dir, temp_path_for


@dataclass
class _OpenShard:
    name: str
    tmp: Path
    tar: tarfile.TarFile
    handle: io.BufferedWriter
    samples: int = 0


@dataclass
class ShardWriter:
    shards_dir: Path
    max_samples: int
    max_bytes: int
    next_number: int = 0
    _current: _OpenShard | None = None
    _closed: list[_OpenShard] = field(default_factory=list)

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
        if shard.samples >= self.max_samples or shard.handle.tell() >= self.max_bytes:
            self.close_current()
        return name

    def _open(self) -> _OpenShard:
        self.shards_dir.mkdir(parents=True, exist_ok=True)
        name = f"{self.next_number:06d}.tar"
        self.next_number += 1
        tmp = temp_path_for(self.shards_dir / name)
        handle = open(tmp, "wb")
        self._current = _OpenShard(
            name=name, tmp=tmp, handle=handle, tar=tarfile.open(fileobj=handle, mode="w", format=tarfile.USTAR_FORMAT)
        )
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
        self._closed.append(shard)
        self._current = None

    @property
    def has_closed(self) -> bool:
        return bool(self._closed)

    def publish(self) -> list[str]:
        """Rename every closed shard to its final name; returns the names."""
        names = []
        for shard in self._closed:
            os.replace(shard.tmp, self.shards_dir / shard.name)
            names.append(shard.name)
        if self._closed:
            fsync_dir(self.shards_dir)
        self._closed = []
        return names


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
