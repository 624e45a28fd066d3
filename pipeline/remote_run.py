"""A run directory on object storage (`run_dir: s3://bucket/run`): a local staging copy that the
driver runs in, published to the bucket in the ledger's commit order.

Object stores have no rename and no directory fsync, so the commit protocol of `manifests.ledger`
cannot run on them directly. It runs, unchanged, in a local staging directory (`staging_dir`,
default under ~/.cache/voxhear/staging); after every ledger commit and after the end-of-run
passes, `RemoteRunDir.push` uploads what changed in an order that keeps the bucket a valid run
directory at every moment, whatever step a kill interrupts:

1. new shards, under their final names (a shard no committed clips part lists is debris that
   the next recovery deletes, as on a local disk);
2. shards that a rewrite (identities, splits, takedown) changed, under the rewrite's staged name
   `shards/.NAME.cSEQ.staged` (a staged file whose commit is not recorded is deleted at recovery;
   one whose commit is recorded replaces its shard: `integrity.complete_rewrites`);
3. ledger parts in commit order, the sources part (the commit record) last in each commit;
4. staged shards copied onto their final names (a server-side copy: no media through the driver)
   and deleted;
5. the consolidated manifests and config.yaml;
6. deletions: published files the staging copy no longer has (a taken-down shard, debris).

The bucket is the truth: `pull` makes the staging copy equal to it at the start of every run
(downloading only files whose ETag differs from what this staging copy last saw), so a run
resumed on another machine, or after a kill mid-push, recovers from what the bucket holds. A
kill between a local commit and its push loses nothing: that commit is not on the bucket, its
local files are deleted by the pull, and its inputs are processed again.

What stays local: the work area (`staging/work`, per-input intermediates), Ray's log. The shard
writer (`pipeline.shards.ShardWriter`, in a Ray actor on a worker with the Ray runner) reads the
samples from the work area, writes each shard into the staging copy under a temporary name and
uploads it itself under its final name (step 1 above, done by the writer instead of the push);
the driver commits it with a rename and the ledger, and `remember_uploaded` records the object so
that the push does not upload it again: no shard passes through the driver. The work area and
the staging copy must therefore be on a filesystem the writer's node and the driver share (one
machine, or `staging_dir` on a shared mount). See docs/design/worker-shards.md.

`RemoteRunLock` is the object-storage counterpart of `runlock.RunLock`: `RUN/.lock` created
with a conditional put (it fails when the object exists), kept fresh by a heartbeat, and taken
over when its holder is gone (same host and the pid is dead) or silent for `stale_after_s`.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import os
import re
import socket
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voxhear.pipeline.io import TMP_SUFFIX, atomic_write_text
from voxhear.pipeline.runlock import HeldLock, RunLockedError
from voxhear.pipeline.settings import ConfigError

log = logging.getLogger(__name__)

MIRROR_RECORD = ".remote-mirror.json"
LOCK_NAME = ".lock"
# What a run directory publishes: the dataset (shards, manifests) and the settings it was made with.
PUBLISHED_FOLDERS = ("shards", "manifests")
PUBLISHED_FILES = ("config.yaml",)
_LEDGER_PART = re.compile(r"^(\d{6})-(\w+)\.parquet$")
_STAGED = re.compile(r"^\.(.+\.tar)\.c(\d{6})\.staged$")
# Within one commit the sources part is the commit record: it goes last.
_PART_ORDER = {"clips": 0, "shards": 1, "takedowns": 2, "splits": 3, "sources": 9}


def is_remote(run_dir: str | os.PathLike) -> bool:
    """True for a URL with a scheme other than file:// (s3://, gs://, memory://, ...)."""
    text = os.fspath(run_dir)
    return "://" in text and not text.startswith("file://")


def open_filesystem(url: str) -> tuple[Any, str]:
    """The fsspec filesystem of `url` and the path on it; a missing protocol package is a ConfigError."""
    import fsspec

    try:
        fs, path = fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as error:
        scheme = url.partition("://")[0]
        raise ConfigError(
            f"run_dir {url}: no filesystem for '{scheme}://' ({error}); s3:// comes with voxhear (s3fs), "
            "gs:// needs gcsfs and az:// adlfs installed on the driver"
        ) from None
    return fs, path.rstrip("/")


def default_staging_dir(url: str) -> Path:
    """~/.cache/voxhear/staging/<last folder of the URL>-<hash of the URL> (XDG_CACHE_HOME honoured)."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    name = re.sub(r"[^A-Za-z0-9._-]", "_", url.rstrip("/").rsplit("/", 1)[-1]) or "run"
    return cache / "voxhear" / "staging" / f"{name}-{hashlib.sha256(url.encode()).hexdigest()[:12]}"


def local_run_dir(run_dir: str, staging_dir: str = "") -> Path:
    """Where the driver runs: the run directory itself, or the staging copy of one on object storage."""
    if not is_remote(run_dir):
        return Path(run_dir).expanduser().absolute()
    return Path(staging_dir).expanduser().absolute() if staging_dir else default_staging_dir(run_dir)


def _is_published(relative: str) -> bool:
    name = relative.rsplit("/", 1)[-1]
    if name.endswith(TMP_SUFFIX):
        return False  # a temp file of an atomic write in flight (or a killed one's debris)
    top = relative.split("/", 1)[0]
    return relative in PUBLISHED_FILES or (top in PUBLISHED_FOLDERS and "/" in relative)


@dataclass
class PushReport:
    uploaded: int = 0
    copied: int = 0
    deleted: int = 0
    bytes: int = 0


class RemoteRunDir:
    """The object-storage run directory `url` and its local staging copy `local`."""

    def __init__(self, url: str, local: Path, fs: Any = None) -> None:
        self.url = url.rstrip("/")
        self.local = Path(local)
        if fs is None:
            self.fs, self.root = open_filesystem(self.url)
        else:
            self.fs, self.root = fs, self.url.partition("://")[2].rstrip("/")
        self.record_path = self.local / MIRROR_RECORD
        # relative path -> {"etag", "size", "mtime_ns"}: the remote object this staging file matches.
        self.record: dict[str, dict[str, Any]] = {}
        if self.record_path.is_file():
            self.record = json.loads(self.record_path.read_text())

    # -- listing -------------------------------------------------------------------------------
    def _remote_files(self) -> dict[str, dict[str, Any]]:
        """relative path -> fsspec info of every published object under the run."""
        if not self.fs.exists(self.root):
            return {}
        found = {}
        for path, info in self.fs.find(self.root, detail=True).items():
            relative = path[len(self.root) + 1 :]
            if _is_published(relative) or _STAGED.match(relative.rsplit("/", 1)[-1]):
                found[relative] = info
        return found

    def _local_files(self) -> dict[str, os.stat_result]:
        found = {}
        for name in PUBLISHED_FILES:
            if (self.local / name).is_file():
                found[name] = (self.local / name).stat()
        for folder in PUBLISHED_FOLDERS:
            base = self.local / folder
            if not base.is_dir():
                continue
            for path in base.rglob("*"):
                relative = path.relative_to(self.local).as_posix()
                if path.is_file() and _is_published(relative) and not _STAGED.match(path.name):
                    found[relative] = path.stat()
        return found

    def _pushed(self, relative: str, stat: os.stat_result) -> bool:
        """The staging file is the one last pushed or pulled (same size and modification time)."""
        seen = self.record.get(relative)
        return seen is not None and (seen["size"], seen["mtime_ns"]) == (stat.st_size, stat.st_mtime_ns)

    def _remember(self, relative: str, etag: str, stat: os.stat_result) -> None:
        """Record that the staging file `relative` (as `stat` finds it) is the object whose ETag is `etag`."""
        self.record[relative] = {"etag": etag, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}

    def _save_record(self) -> None:
        atomic_write_text(self.record_path, json.dumps(self.record, sort_keys=True))

    def _remote_path(self, relative: str) -> str:
        return f"{self.root}/{relative}"

    @staticmethod
    def _etag(info: dict[str, Any]) -> str:
        return str(info.get("ETag") or info.get("etag") or info.get("md5Hash") or info.get("mtime") or "")

    # -- pull ----------------------------------------------------------------------------------
    def pull(self) -> int:
        """Make the staging copy's published files equal to the bucket's; returns files downloaded."""
        self.local.mkdir(parents=True, exist_ok=True)
        remote = self._remote_files()
        local = self._local_files()
        downloaded = 0
        for relative, info in sorted(remote.items()):
            target = self.local / relative
            stat = local.get(relative)
            if stat is not None and self._pushed(relative, stat) and self.record[relative]["etag"] == self._etag(info):
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(f".{target.name}.pull{TMP_SUFFIX}")
            self.fs.get_file(self._remote_path(relative), str(partial))
            os.replace(partial, target)
            self._remember(relative, self._etag(info), target.stat())
            downloaded += 1
        for relative in sorted(set(local) - set(remote)):
            # Committed locally but never published: the bucket has no record of it, so neither do we.
            (self.local / relative).unlink()
            self.record.pop(relative, None)
        for relative in set(self.record) - set(remote):
            self.record.pop(relative)
        self._save_record()
        return downloaded

    # -- push ----------------------------------------------------------------------------------
    def push(self) -> PushReport:
        """Publish what changed in the staging copy since the last push or pull (order: module docstring)."""
        report = PushReport()
        local = self._local_files()
        changed = {relative: stat for relative, stat in local.items() if not self._pushed(relative, stat)}
        shards = sorted(r for r in changed if r.startswith("shards/"))
        parts = sorted(
            (r for r in changed if r.startswith("manifests/_ledger/") and _LEDGER_PART.match(r.rsplit("/", 1)[-1])),
            key=_ledger_order,
        )
        others = sorted(set(changed) - set(shards) - set(parts))
        rewritten_by = _rewrites(self.local, parts)
        staged: list[tuple[str, str]] = []
        for relative in shards:
            name = relative.rsplit("/", 1)[-1]
            seq = rewritten_by.get(name)
            if relative in self.record and seq is not None:
                # A published shard's new content: staged until its rewrite's commit record is up.
                staged_name = f"shards/.{name}.c{seq:06d}.staged"
                self._upload(relative, changed[relative], report, remote_relative=staged_name)
                staged.append((staged_name, relative))
            else:
                self._upload(relative, changed[relative], report)
        for relative in parts:
            self._upload(relative, changed[relative], report)
        for staged_name, relative in staged:
            self._copy(staged_name, relative)
            self._remove([staged_name])
            self.record[relative]["etag"] = self._etag(self.fs.info(self._remote_path(relative)))
            report.copied += 1
        for relative in others:
            self._upload(relative, changed[relative], report)
        gone = sorted(set(self.record) - set(local))
        if gone:
            # Last: a taken-down shard, or debris the recovery removed from the staging copy.
            self._remove([r for r in gone if self.fs.exists(self._remote_path(r))])
            for relative in gone:
                self.record.pop(relative)
            report.deleted = len(gone)
        self._save_record()
        if report.uploaded or report.deleted:
            log.info(
                "published to %s: %d files (%.1f MB), %d replaced, %d deleted",
                self.url,
                report.uploaded,
                report.bytes / 1e6,
                report.copied,
                report.deleted,
            )
        return report

    def remember_uploaded(self, written: Iterable[Any]) -> None:
        """Record shards that their writer uploaded (`shards.WrittenShard` with an etag) and the
        driver has just committed (renamed onto their names), so that the push skips them."""
        changed = False
        for shard in written:
            if not shard.etag:
                continue
            relative = f"shards/{shard.name}"
            self._remember(relative, shard.etag, (self.local / relative).stat())
            changed = True
        if changed:
            self._save_record()

    def _upload(
        self, relative: str, stat: os.stat_result, report: PushReport, remote_relative: str | None = None
    ) -> None:
        remote = self._remote_path(remote_relative or relative)
        self._put(relative, remote_relative or relative)
        self._remember(relative, self._etag(self.fs.info(remote)), stat)
        report.uploaded += 1
        report.bytes += stat.st_size

    # Every write to the bucket goes through these three (the reliability tests kill a run at each).
    def _put(self, relative: str, remote_relative: str) -> None:
        self.fs.put_file(str(self.local / relative), self._remote_path(remote_relative))

    def _copy(self, source: str, target: str) -> None:
        self.fs.copy(self._remote_path(source), self._remote_path(target))

    def _remove(self, relatives: list[str]) -> None:
        if relatives:
            self.fs.rm([self._remote_path(r) for r in relatives])


def put_new_shard(fs: Any, remote_path: str, local_path: str) -> str:
    """Upload a closed shard under its final name (unlisted by any commit until the driver commits
    it); returns the object's ETag. Called by the shard writer, wherever it runs."""
    fs.put_file(local_path, remote_path)
    return RemoteRunDir._etag(fs.info(remote_path))


def _ledger_order(relative: str) -> tuple[int, int, str]:
    match = _LEDGER_PART.match(relative.rsplit("/", 1)[-1])
    assert match is not None
    return int(match.group(1)), _PART_ORDER.get(match.group(2), 5), relative


def _rewrites(local: Path, parts: Iterable[str]) -> dict[str, int]:
    """shard name -> the newest of the given shards parts that records it (a rewrite or a publish)."""
    import pyarrow.parquet as pq

    found: dict[str, int] = {}
    for relative in parts:
        match = _LEDGER_PART.match(relative.rsplit("/", 1)[-1])
        if match and match.group(2) == "shards":
            names = pq.read_table(local / relative, columns=["shard"]).column("shard").to_pylist()
            for name in names:
                found[name] = max(found.get(name, -1), int(match.group(1)))
    return found


@contextmanager
def staged_change(url: str, staging_dir: str = "") -> Iterator[Path]:
    """`with staged_change(url) as folder:` a local copy of the run directory `url` to change in
    place (a takedown), under the bucket's lock: pulled and recovered first, its changes published
    after (in the push's order, so a kill at any point leaves a valid bucket)."""
    from voxhear.manifests import Ledger

    remote = RemoteRunDir(url, local_run_dir(url, staging_dir))
    with RemoteRunLock(remote.fs, remote.root):
        remote.pull()
        if (remote.local / "manifests" / "_ledger").is_dir():
            Ledger(remote.local).recover()  # a killed run's debris, as a run's start removes it
        yield remote.local
        remote.push()


class RemoteRunLock(HeldLock):
    """`with RemoteRunLock(fs, root):` holds ROOT/.lock on object storage, or raises RunLockedError."""

    def __init__(self, fs: Any, root: str, heartbeat_s: float = 30.0, stale_after_s: float = 300.0) -> None:
        self.fs = fs
        self.path = f"{root.rstrip('/')}/{LOCK_NAME}"
        self.heartbeat_s = heartbeat_s
        self.stale_after_s = stale_after_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._body = b""

    def _holder_body(self) -> bytes:
        started = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
        return json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": started}).encode()

    def acquire(self) -> None:
        self._body = self._holder_body()
        for attempt in range(2):
            try:
                # A conditional put: fails when the object exists, so two runs cannot both create it.
                self.fs.pipe_file(self.path, self._body, mode="create")
                break
            except FileExistsError:
                holder = self._read_holder()
                if attempt == 0 and self._is_stale(holder):
                    log.warning("taking over the lock of a run that ended without releasing it: %s", holder)
                    self.fs.rm(self.path)
                    continue
                raise RunLockedError(
                    f"run directory {self.path.rsplit('/', 1)[0]} is in use by {self._describe(holder)}; wait "
                    f"for that run to end (or stop it), or use another run directory. A lock older than "
                    f"{self.stale_after_s:.0f} s without a heartbeat is taken over."
                ) from None
        self._thread = threading.Thread(target=self._beat, name="voxhear-run-lock", daemon=True)
        self._thread.start()

    def _read_holder(self) -> dict[str, Any]:
        try:
            info = self.fs.info(self.path)
            body = json.loads(self.fs.cat_file(self.path) or b"{}")
        except (FileNotFoundError, ValueError):
            return {}
        modified = info.get("LastModified") or info.get("mtime")
        if isinstance(modified, datetime.datetime):
            body["age_s"] = (datetime.datetime.now(datetime.UTC) - modified).total_seconds()
        return body

    def _is_stale(self, holder: dict[str, Any]) -> bool:
        if not holder:
            return True
        if holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int):
            try:
                os.kill(holder["pid"], 0)
            except ProcessLookupError:
                return True  # its process is gone: killed without releasing
            except PermissionError:
                return False
            if holder["pid"] == os.getpid():
                return False
        return holder.get("age_s", 0.0) > self.stale_after_s

    @staticmethod
    def _describe(holder: dict[str, Any]) -> str:
        if not holder:
            return "another process"
        return f"pid {holder.get('pid')} on host {holder.get('host')}, started {holder.get('started')}"

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                self.fs.pipe_file(self.path, self._body)  # a fresh LastModified
            except Exception as error:  # a missed beat is retried; only staleness matters to others
                log.warning("could not refresh the run lock %s: %s", self.path, error)

    def release(self) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(timeout=10)
        self._thread = None
        try:
            self.fs.rm(self.path)
        except FileNotFoundError:
            pass
