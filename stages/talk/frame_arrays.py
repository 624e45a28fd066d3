"""A face track's per-frame arrays (the face stage's `.npz`), read a window of frames at a time.

The face stage writes its arrays compressed, so `np.load(..., mmap_mode=...)` cannot map them and
reading one array at all decompresses it whole (the landmarks are 5.7 KB a frame). `FrameArrays`
reads an array either whole (the small ones the talk stage needs for every frame: boxes, frame
numbers, embeddings) or as rows [a, b): each member is then decompressed once, front to back,
holding only the last window read, as long as the windows come in order (the same window may be
read again; one before it reopens the member).
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import IO

import numpy as np


class _Member:
    """An open `.npy` member of the archive and the row its stream stands at."""

    def __init__(self, archive: zipfile.ZipFile, name: str) -> None:
        self.stream: IO[bytes] = archive.open(f"{name}.npy")
        version = np.lib.format.read_magic(self.stream)
        if version == (1, 0):
            header = np.lib.format.read_array_header_1_0(self.stream)
        else:
            header = np.lib.format.read_array_header_2_0(self.stream)
        self.shape, fortran_order, self.dtype = header
        self.streamable = not fortran_order and not self.dtype.hasobject and len(self.shape) >= 1
        self.row_shape = tuple(self.shape[1:])
        self.row_bytes = int(np.prod(self.row_shape, dtype=np.int64)) * self.dtype.itemsize
        self.row = 0
        # The last window read, handed out again to a second reader of the same frames.
        self.last: tuple[int, np.ndarray] = (0, np.empty((0, *self.row_shape), self.dtype))

    def read(self, a: int, b: int) -> np.ndarray:
        a, b = min(a, self.shape[0]), min(b, self.shape[0])
        first, window = self.last
        if first <= a and b <= first + len(window):
            return window[a - first : b - first]
        skip = (a - self.row) * self.row_bytes
        while skip > 0:
            got = len(self.stream.read(min(skip, 1 << 20)))
            if not got:
                raise EOFError("frames array ends early")
            skip -= got
        count = max(0, b - a)
        data = self.stream.read(count * self.row_bytes)
        if len(data) != count * self.row_bytes:
            raise EOFError("frames array ends early")
        self.row = a + count
        window = np.frombuffer(data, self.dtype).reshape((count, *self.row_shape))
        self.last = (a, window)
        return window

    def close(self) -> None:
        self.stream.close()


class FrameArrays:
    """The arrays of one face track's `.npz`: `arrays[name]` whole, `arrays.rows(name, a, b)` in windows."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._archive = zipfile.ZipFile(self.path)
        self._names = {n.removesuffix(".npy") for n in self._archive.namelist() if n.endswith(".npy")}
        self._whole: dict[str, np.ndarray] = {}
        self._members: dict[str, _Member] = {}

    def __contains__(self, name: str) -> bool:
        return name in self._names

    def __getitem__(self, name: str) -> np.ndarray:
        """The whole array (kept: ask only for the small ones)."""
        if name not in self._whole:
            if name not in self._names:
                raise KeyError(f"{name} is not in {self.path}")
            with self._archive.open(f"{name}.npy") as stream:
                self._whole[name] = np.lib.format.read_array(stream, allow_pickle=False)
        return self._whole[name]

    def get(self, name: str, default: np.ndarray | None = None) -> np.ndarray | None:
        return self[name] if name in self else default

    def rows(self, name: str, a: int, b: int) -> np.ndarray:
        """Rows [a, b) of an array (read-only), reading on from the previous window when a >= its end."""
        if name in self._whole:
            return self._whole[name][a:b]
        if name not in self._names:
            raise KeyError(f"{name} is not in {self.path}")
        member = self._members.get(name)
        if (
            member is not None
            and a < member.row
            and not (member.last[0] <= a and min(b, member.shape[0]) <= member.row)
        ):
            member.close()
            member = None
        if member is None:
            member = self._members[name] = _Member(self._archive, name)
        if not member.streamable:
            member.close()
            del self._members[name]
            return self[name][a:b]
        return member.read(a, b)

    def close(self) -> None:
        for member in self._members.values():
            member.close()
        self._members.clear()
        self._archive.close()

    def __enter__(self) -> FrameArrays:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
