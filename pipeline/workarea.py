"""The run's work area (`run_dir/work`): what is kept of it, and how large it is.

Every stage writes an input's intermediates under `work/<source_id>/` (normalized media, shot
segments, face crops, separated audio, clip files) and ingest copies remote inputs into
`work/_fetched/<digest>/`: gigabytes per input hour. Once an input's samples and rows are
committed nothing reads them again (resume skips the input; shards, manifests, QC, the datasheet,
verify and takedown read shards and manifests), so unless `keep_work` is set:

- the sink removes an input's folders right after the ledger commit that records it (never before:
  a crash between the two leaves files, never a committed input without its data), and
- a run's start removes everything a killed attempt left, except the remote copies of inputs still
  to do (fetched again otherwise); the intermediates of uncommitted inputs are made again anyway.

`keep_work: true` keeps all of it, for debugging and for `voxhear eval` and the benchmarks, which
score a run's clips from their work files.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
from collections.abc import Iterable
from pathlib import Path

from voxhear.pipeline.inputs import is_remote
from voxhear.pipeline.io import remove_stale_temps

log = logging.getLogger(__name__)

FETCHED = "_fetched"
# A source id names a folder of its own: a plain name, never `_fetched`, `.` or a path.
_SOURCE_ID = re.compile(r"[0-9A-Za-z][0-9A-Za-z_-]*")


def work_dir(run_dir: Path) -> Path:
    """The work area of `run_dir` (RunContext.work_dir)."""
    return Path(run_dir) / "work"


def fetched_path(work: Path, uri: str) -> Path:
    """Where ingest copies remote input `uri`: a folder of its own per URI, the file keeping its name."""
    digest = hashlib.sha1(uri.encode()).hexdigest()[:16]
    return work / FETCHED / digest / Path(uri.split("?")[0]).name


def remove_input_work(work: Path, source_id: str, source_uri: str) -> None:
    """Delete the work files of one committed input: its folder and its remote copy."""
    if _SOURCE_ID.fullmatch(source_id or ""):
        _remove(work / source_id)
    if is_remote(source_uri):
        _remove(fetched_path(work, source_uri).parent)


def clean_at_start(work: Path, keep_work: bool, remote_todo: Iterable[str]) -> None:
    """What a run does to the work area before it starts (it holds the run lock, so nothing else
    writes there): temp files of killed attempts always go; without `keep_work` everything else
    goes too except the remote copies of the inputs in `remote_todo`."""
    if not work.is_dir():
        return
    remove_stale_temps(work)
    if keep_work:
        return
    fetched_kept = {fetched_path(work, uri).parent.name for uri in remote_todo}
    for entry in work.iterdir():
        if entry.name != FETCHED:
            _remove(entry)
            continue
        for copy in entry.iterdir():
            if copy.name not in fetched_kept:
                _remove(copy)


def size_bytes(work: Path) -> int:
    """Bytes the files under `work` take (links not followed; 0 for no work area)."""
    total = 0
    for folder, _, names in os.walk(work):
        for name in names:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except FileNotFoundError:  # removed meanwhile
                continue
    return total


def format_size(n: int) -> str:
    """`n` bytes for people: 512 B, 3.4 MB, 1.2 GB."""
    size = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"


def _remove(path: Path) -> None:
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    except FileNotFoundError:
        return
    except OSError as error:  # a file that cannot go costs space, not data: the run goes on
        log.warning("could not remove %s from the work area: %s", path, error)
