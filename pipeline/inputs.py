"""Expand the configured inputs into one URI per input video.

Accepts files, directories (searched recursively for video files), globs, list files
(.txt one per line, .csv or .parquet with a `uri`/`path` column) and URIs of any fsspec
filesystem (s3://, gs://, https://, memory://). A path named explicitly is always an input,
even if it does not exist: it then ends as a `failed` manifest row instead of vanishing.

A local path whose bytes are not valid UTF-8 (Python holds them as surrogate escapes, which no
manifest can store) is named by a `file://` URI with its bytes percent-encoded (RFC 8089):
`/data/bad\xff.mp4` is `file:///data/bad%FF.mp4`. Any other local path stays a plain path, and a
`file://` input is percent-decoded, so the representation is lossless and unambiguous.

A folder is walked once per real folder (symlink loops do not multiply inputs) and a file named
twice (a link, a hard link) is one input. `copy_remote` fetches a remote input under a size cap
and a read timeout, telling the input's faults (InputError) from the store's (SystemFault).
"""

from __future__ import annotations

import fnmatch
import glob as globlib
import logging
import os
import queue
import threading
import urllib.parse
from pathlib import Path
from typing import IO

import fsspec
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from voxhear.pipeline.io import atomic_path
from voxhear.pipeline.stage import InputError, SystemFault

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = {".mp4", ".mkv", ".mov", ".avi", ".webm", ".mpg", ".mpeg", ".m4v", ".flv", ".ts", ".wmv", ".3gp"}
LIST_EXTENSIONS = {".txt", ".lst", ".csv", ".parquet"}
URI_COLUMNS = ("uri", "path", "url", "source_uri", "file")


def is_remote(uri: str) -> bool:
    return "://" in uri and not uri.startswith("file://")


def canonical(uri: str) -> str:
    """The identity of an input across reruns: absolute local paths, remote URIs unchanged.

    A local path that is not valid UTF-8 becomes a percent-encoded `file://` URI (`local_path`
    reads it back), so that every identity can be stored in a manifest.
    """
    if is_remote(uri):
        return uri
    path = str(local_path(uri).expanduser().absolute())
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return "file://" + urllib.parse.quote(os.fsencode(path), safe="/")
    return path


def local_path(uri: str) -> Path:
    """The file a local input names: a plain path as it is, a `file://` URI percent-decoded."""
    if not uri.startswith("file://"):
        return Path(uri)
    rest = uri.removeprefix("file://")
    if rest.startswith("localhost/"):
        rest = rest.removeprefix("localhost")
    return Path(os.fsdecode(urllib.parse.unquote_to_bytes(rest)))


def open_input(uri: str) -> IO[bytes]:
    return fsspec.open(uri, "rb").open()


# A remote input larger than this is not fetched: 6 h (ingest.max_duration_s) of 1080p at 8 Mbit/s
# is 22 GB, and a copy may not fill a worker's disk. The longest one read may take (the open too):
# a server that stops sending would otherwise hold a worker forever.
REMOTE_MAX_BYTES = 32 * 2**30
REMOTE_TIMEOUT_S = 120.0
# Bytes per read of a remote copy; the read timeout is per read, so this sets the slowest link
# accepted (4 MiB in 120 s is 35 kB/s).
REMOTE_CHUNK = 1 << 22


# What the reader thread hands over: the announced size first (None if the store does not say),
# then chunks of bytes, b"" at the end, or the exception that stopped it.
_Item = int | bytes | BaseException | None


class RemoteTooLarge(InputError):
    """The remote input is larger than the cap (announced by the store, or counted while copying)."""

    def __init__(self, message: str) -> None:
        super().__init__("remote_too_large", message)


class RemoteTimeout(InputError):
    """Opening or one read of the remote input took longer than the read timeout."""

    def __init__(self, message: str) -> None:
        super().__init__("remote_timeout", message)


class RemoteUnavailable(SystemFault):
    """The store failed (network, credentials, a 5xx): not the input's fault, so it stays uncommitted."""


def copy_remote(uri: str, target: Path, max_bytes: int = REMOTE_MAX_BYTES, timeout_s: float = REMOTE_TIMEOUT_S) -> int:
    """Copy remote input `uri` to `target` (atomically: a killed copy leaves only a temp file) and
    return its size in bytes.

    Raises:
        RemoteTooLarge: (InputError `remote_too_large`) more than `max_bytes`.
        RemoteTimeout: (InputError `remote_timeout`) the open or a read took over `timeout_s`.
        InputError: `not_found` when the store says there is no such object.
        RemoteUnavailable: (a SystemFault) any other failure of the store or the network.
    """
    stop = threading.Event()
    chunks: queue.Queue[_Item] = queue.Queue(maxsize=4)
    # Reads run in a daemon thread: a read blocked on a silent server cannot be interrupted, but
    # the caller stops waiting for it (and the thread ends when the read does, or with the process).
    reader = threading.Thread(target=_read_remote, args=(uri, chunks, stop), daemon=True, name="copy_remote")
    reader.start()
    try:
        with atomic_path(target) as tmp, open(tmp, "wb") as out:
            return _write_chunks(uri, chunks, out, max_bytes, timeout_s)
    finally:
        stop.set()


def _write_chunks(uri: str, chunks: queue.Queue[_Item], out: IO[bytes], max_bytes: int, timeout_s: float) -> int:
    announced = _next(uri, chunks, timeout_s)
    if isinstance(announced, int) and announced > max_bytes:
        raise RemoteTooLarge(f"{uri} is {announced} bytes, more than the cap of {max_bytes}")
    copied = 0
    while chunk := _next(uri, chunks, timeout_s):
        assert isinstance(chunk, bytes)
        copied += len(chunk)
        if copied > max_bytes:
            raise RemoteTooLarge(f"{uri} is more than the cap of {max_bytes} bytes (stopped copying there)")
        out.write(chunk)
    return copied


def _next(uri: str, chunks: queue.Queue[_Item], timeout_s: float) -> _Item:
    try:
        item = chunks.get(timeout=timeout_s)
    except queue.Empty:
        raise RemoteTimeout(f"reading {uri} stalled for more than {timeout_s:g}s; it was given up") from None
    if isinstance(item, Exception):
        raise _remote_error(uri, item) from item
    if isinstance(item, BaseException):  # the reader thread was interrupted: no input's fault
        raise item
    return item


def _remote_error(uri: str, error: Exception) -> Exception:
    """The exception a failed read of `uri` becomes: the input's fault or the store's."""
    if isinstance(error, FileNotFoundError) and not _store_failure_behind(error):
        return InputError("not_found", f"input {uri} does not exist")
    if isinstance(error, TimeoutError):  # the filesystem's own timeout (fsspec's FSTimeoutError is one)
        return RemoteTimeout(f"reading {uri} timed out: {error}")
    return RemoteUnavailable(
        f"cannot fetch {uri}: {type(error).__name__}: {error} (network, credentials or the store); "
        "the input is left uncommitted, rerun once this is fixed"
    )


def _store_failure_behind(error: FileNotFoundError) -> bool:
    """Whether a "not found" stands for a failure of the store: fsspec's HTTP filesystem reports a
    503 or a refused connection as FileNotFoundError, caused by the real error."""
    cause = error.__cause__
    while cause is not None:
        status = getattr(cause, "status", None)
        if isinstance(status, int) and status not in (404, 410):
            return True
        if isinstance(cause, OSError) and not isinstance(cause, FileNotFoundError):
            return True  # a refused or reset connection
        cause = cause.__cause__
    return False


def _read_remote(uri: str, chunks: queue.Queue[_Item], stop: threading.Event) -> None:
    """Reader thread: put the announced size, the chunks of `uri` and b"" (or an exception) on `chunks`."""
    try:
        fs, path = fsspec.core.url_to_fs(uri)
        _hand_over(chunks, _announced_size(fs, path), stop)
        with fs.open(path, "rb") as src:
            while not stop.is_set():
                chunk = src.read(REMOTE_CHUNK)
                _hand_over(chunks, chunk, stop)
                if not chunk:
                    return
    except BaseException as error:  # handed to the caller, which decides what it means
        _hand_over(chunks, error, stop)


def _announced_size(fs: fsspec.AbstractFileSystem, path: str) -> int | None:
    try:
        size = fs.size(path)
    except Exception:  # a store that cannot say (or fails: opening the file tells which), counted instead
        return None
    return int(size) if size is not None else None


def _hand_over(chunks: queue.Queue[_Item], item: _Item, stop: threading.Event) -> None:
    # The queue is bounded (memory); poll `stop` so that a caller that gave up does not leave us blocked.
    while not stop.is_set():
        try:
            chunks.put(item, timeout=0.5)
            return
        except queue.Full:
            continue


def expand_inputs(specs: list[str]) -> list[str]:
    """Return the sorted, de-duplicated canonical URIs the specs name.

    A local file reached under several names (a symlink, a hard link, a folder linked twice) is one
    input, named by its first plain path (see `_one_name_per_file`).
    """
    found: list[str] = []
    for spec in specs:
        found.extend(_expand_one(spec))
    return _one_name_per_file(sorted(dict.fromkeys(canonical(u) for u in found)))


def _expand_one(spec: str) -> list[str]:
    if is_remote(spec):
        fs, path = fsspec.core.url_to_fs(spec)
        protocol = spec.split("://", 1)[0]
        if globlib.has_magic(path):
            return [f"{protocol}://{p}" for p in fs.glob(path)]
        if fs.isdir(path):
            return [f"{protocol}://{p}" for p in fs.find(path) if Path(p).suffix.lower() in VIDEO_EXTENSIONS]
        if Path(path).suffix.lower() in LIST_EXTENSIONS:
            return _read_list(spec)
        return [spec]
    path = local_path(spec).expanduser()
    if globlib.has_magic(spec):
        matches = _glob_files(str(path))
        if not matches:
            log.warning("input glob %s matched nothing", spec)
        return matches
    if path.is_dir():
        return [
            str(p)
            for p in _tree_files(path)
            if p.suffix.lower() in VIDEO_EXTENSIONS and not p.name.startswith(".") and p.is_file()
        ]
    if path.is_file() and path.suffix.lower() in LIST_EXTENSIONS:
        return _read_list(str(path))
    return [str(path)]


def _tree_files(root: Path) -> list[Path]:
    """Every file under `root`, in a stable order, each folder walked once.

    Symlinked folders are followed (a link to a data disk is meant to be read), but a folder already
    walked is not walked again: a loop (`loop -> ..`) would otherwise name every video without end.
    Folders reached without a link are walked before any link is followed, so that a file keeps
    its plain name where it has one.
    """
    seen: set[tuple[int, int]] = set()
    files: list[Path] = []
    pending = [root]
    while pending:
        links: list[Path] = []
        for top in pending:
            for folder, subfolders, names in os.walk(top):  # does not descend into links
                if not _first_visit(Path(folder), seen):
                    subfolders.clear()
                    continue
                subfolders.sort()
                links += [Path(folder, d) for d in subfolders if os.path.islink(os.path.join(folder, d))]
                files += [Path(folder, n) for n in sorted(names)]
        pending = links
    return files


def _first_visit(folder: Path, seen: set[tuple[int, int]]) -> bool:
    try:
        info = folder.stat()
    except OSError:  # a broken or unreadable link: nothing to walk
        return False
    key = (info.st_dev, info.st_ino)
    if key in seen:
        return False
    seen.add(key)
    return True


def _glob_files(pattern: str) -> list[str]:
    """The files a local glob matches.

    `**` is matched over `_tree_files` (glob's own `**` follows symlinked folders into loops and
    returns the same video under ever longer names); other patterns cannot recurse and use glob.
    """
    if "**" not in pattern:
        return [m for m in sorted(globlib.glob(pattern)) if Path(m).is_file()]
    parts = Path(pattern).parts
    fixed = next(i for i, part in enumerate(parts) if globlib.has_magic(part))
    root = Path(*parts[:fixed]) if fixed else Path(".")
    if not root.is_dir():
        return []
    rest = parts[fixed:]
    matches = [p for p in _tree_files(root) if _parts_match(p.relative_to(root).parts, rest) and p.is_file()]
    return [str(p) for p in matches]


def _parts_match(names: tuple[str, ...], pattern: tuple[str, ...]) -> bool:
    """glob's rules per path component: `**` is any number of folders, `*`/`?`/`[]` stay within a
    name, and hidden names match only a pattern that starts with a dot (as glob.glob does)."""
    if not pattern:
        return not names
    head, rest = pattern[0], pattern[1:]
    if head == "**":
        return any(
            _parts_match(names[i:], rest)
            for i in range(len(names) + 1)
            if not any(name.startswith(".") for name in names[:i])
        )
    if not names or (names[0].startswith(".") and not head.startswith(".")):
        return False
    return fnmatch.fnmatchcase(names[0], head) and _parts_match(names[1:], rest)


def _one_name_per_file(uris: list[str]) -> list[str]:
    """Drop local names of a file already named: one input per file (device and inode), not per path.

    The name kept is one without a symlink in it where there is one, else the first in sorted
    order, so the same inputs keep the same identity from run to run. Names that do not exist (an
    explicitly named path becomes a `failed` row) and remote URIs are kept as they are.
    """
    by_file: dict[tuple[int, int], list[str]] = {}
    kept: list[str] = []
    for uri in uris:
        try:
            info = os.stat(local_path(uri)) if not is_remote(uri) else None
        except OSError:
            info = None
        if info is None:
            kept.append(uri)
        else:
            by_file.setdefault((info.st_dev, info.st_ino), []).append(uri)
    for names in by_file.values():
        plain = [n for n in names if os.path.realpath(local_path(n)) == str(local_path(n))]
        kept.append((plain or names)[0])
        if len(names) > 1:
            log.info("input %s is also named %s; it is processed once", kept[-1], ", ".join(names[1:]))
    return sorted(kept)


def _read_list(uri: str) -> list[str]:
    suffix = Path(uri.split("?")[0]).suffix.lower()
    with fsspec.open(uri, "rb") as handle:
        if suffix == ".parquet":
            table = pq.read_table(handle)
        elif suffix == ".csv":
            table = pacsv.read_csv(handle)
        else:
            # A name that is not UTF-8 keeps its bytes (surrogate escapes; `canonical` encodes them).
            lines = handle.read().decode("utf-8", "surrogateescape").splitlines()
            entries = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
            return [_relative_to(uri, e) for e in entries]
    column = next((c for c in URI_COLUMNS if c in table.column_names), None)
    if column is None:
        raise ValueError(
            f"list file {uri} needs one of the columns {', '.join(URI_COLUMNS)}; it has {', '.join(table.column_names)}"
        )
    return [_relative_to(uri, str(v)) for v in table.column(column).to_pylist() if v]


def _relative_to(list_uri: str, entry: str) -> str:
    """Relative entries in a local list file are relative to the list's folder."""
    if is_remote(entry) or is_remote(list_uri) or entry.startswith("file://") or Path(entry).is_absolute():
        return entry
    return str(Path(list_uri).parent / entry)
