"""Expand the configured inputs into one URI per input video.

Accepts files, directories (searched recursively for video files), globs, list files
(.txt one per line, .csv or .parquet with a `uri`/`path` column) and URIs of any fsspec
filesystem (s3://, gs://, https://, memory://). A path named explicitly is always an input,
even if it does not exist: it then ends as a `failed` manifest row instead of vanishing.

A local path whose bytes are not valid UTF-8 (Python holds them as surrogate escapes, which no
manifest can store) is named by a `file://` URI with its bytes percent-encoded (RFC 8089):
`/data/bad\xff.mp4` is `file:///data/bad%FF.mp4`. Any other local path stays a plain path, and a
`file://` input is percent-decoded, so the representation is lossless and unambiguous.
"""

from __future__ import annotations

import glob as globlib
import logging
import os
import urllib.parse
from pathlib import Path
from typing import IO

import fsspec
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

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


def expand_inputs(specs: list[str]) -> list[str]:
    """Return the sorted, de-duplicated canonical URIs the specs name."""
    found: list[str] = []
    for spec in specs:
        found.extend(_expand_one(spec))
    return sorted(dict.fromkeys(canonical(u) for u in found))


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
        matches = sorted(globlib.glob(str(path), recursive=True))
        if not matches:
            log.warning("input glob %s matched nothing", spec)
        return [m for m in matches if Path(m).is_file()]
    if path.is_dir():
        return [
            str(p)
            for p in sorted(path.rglob("*"))
            if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS and not p.name.startswith(".")
        ]
    if path.is_file() and path.suffix.lower() in LIST_EXTENSIONS:
        return _read_list(str(path))
    return [str(path)]


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
