"""One run at a time per run directory: an OS advisory lock on RUN/.lock.

Two runs on one directory would each delete what they take for the other's debris, commit the
same ledger numbers and write the same shards. `run_pipeline` therefore holds an exclusive
`flock` on `RUN/.lock` for the whole run, whatever the runner (the driver holds it; Ray workers
never write to the ledger). The kernel releases the lock when the process ends, however it ends,
so a killed run never leaves a stale lock: the file's text (pid, host, start time of the holder)
is only there to name the holder in the refusal. The file itself is never deleted (deleting a
lock file lets two processes lock two different files).
"""

from __future__ import annotations

import datetime
import fcntl
import os
import socket
from pathlib import Path
from types import TracebackType
from typing import Self

from voxhear.pipeline.settings import ConfigError

LOCK_NAME = ".lock"


class RunLockedError(ConfigError):
    """Another process holds the run directory's lock."""


class HeldLock:
    """`with lock:` acquires it (or raises RunLockedError at once) and releases it on the way out."""

    def acquire(self) -> None:
        raise NotImplementedError

    def release(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.release()


class RunLock(HeldLock):
    """`with RunLock(run_dir):` holds RUN/.lock exclusively, or raises RunLockedError at once."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / LOCK_NAME
        self.fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Not O_TRUNC: the holder's text must survive until the lock is ours.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            raise RunLockedError(
                f"run directory {self.path.parent} is in use by {holder}; wait for that run to end "
                f"(or stop it), or use another run directory"
            ) from None
        started = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
        text = f"pid {os.getpid()} on host {socket.gethostname()}, started {started}\n"
        os.ftruncate(fd, 0)
        os.pwrite(fd, text.encode(), 0)
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            fd, self.fd = self.fd, None
            os.close(fd)  # closing the only descriptor releases the flock
