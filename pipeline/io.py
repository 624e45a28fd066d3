"""Atomic file writes and small filesystem helpers.

Everything a later reader may see (shards, manifests, markers) is written under a temporary
name, fsynced and renamed, so a run killed at any moment leaves either the old file or the new
one, never half of one.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

TMP_SUFFIX = ".tmp"
# A full, over-quota or read-only filesystem: `disk_error` names it.
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})


def temp_path_for(path: Path) -> Path:
    # The unique part keeps two workers that race on the same target from clobbering each other's temp.
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}{TMP_SUFFIX}")


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class DiskError(OSError):
    """A full, over-quota or read-only filesystem, naming the file and the filesystem (`disk_error`)."""


def filesystem_note(path: Path | str) -> str:
    """The filesystem holding `path` (or its nearest existing folder): "the filesystem mounted at M (F MB free
    of T MB)"."""
    where = Path(path).absolute()
    while not where.exists() and where != where.parent:
        where = where.parent
    mount = where if where.is_dir() else where.parent
    while not os.path.ismount(mount) and mount != mount.parent:
        mount = mount.parent
    usage = shutil.disk_usage(where)
    return f"the filesystem mounted at {mount} ({usage.free / 1e6:.1f} MB free of {usage.total / 1e6:.1f} MB)"


def disk_error(error: OSError, path: Path) -> DiskError:
    """`error` (errno in DISK_ERRNOS) as a DiskError of the same errno that names the file being
    written and its filesystem: where it is mounted and how much is free (pyarrow's own says
    neither: "Error writing bytes to file. Detail: [errno 28] No space left on device")."""
    return DiskError(error.errno, f"{os.strerror(error.errno or 0)} on {filesystem_note(path)}", str(path))


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it is fsynced and renamed to `path`.

    A full or read-only disk raises `disk_error` (same errno), naming `path` and its filesystem.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_for(path)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except OSError as error:
        if error.errno in DISK_ERRNOS and not isinstance(error, DiskError):
            raise disk_error(error, path) from error
        raise
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_table(path: Path, table: pa.Table) -> None:
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def sha256_file(path: Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def remove_stale_temps(directory: Path) -> int:
    """Delete temp files a killed run left behind; returns how many."""
    if not directory.exists():
        return 0
    removed = 0
    for tmp in directory.rglob(f".*{TMP_SUFFIX}"):
        tmp.unlink(missing_ok=True)
        removed += 1
    return removed
