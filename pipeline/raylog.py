"""Where Ray's own output goes during `voxhear run`: a log file in the run directory.

Ray writes to the driver's terminal from four places: its Python loggers (`ray`, `ray.data`:
connection notes, Ray Data's execution plans, its progress lines when stdout is no terminal, its
warnings), its workers' output forwarded to the driver (`log_to_driver`), Ray Data's progress bars,
and its C++ core, which writes straight to file descriptor 2 (one line a second, for instance,
while it retries a cluster that refuses it). On a long run that is hundreds of lines that bury
voxhear's own progress bar and summary. `ray_output_to(path)` sends all of it to `path` while
Python's `sys.stderr`, which voxhear's progress bar and warnings use, stays on the terminal.
`voxhear run --verbose` leaves Ray's output where Ray puts it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

log = logging.getLogger(__name__)

# The open log while `ray_output_to` is active, else None.
_log_file: TextIO | None = None
_FORWARD_HANDLER = "voxhear_ray_log"


def active() -> bool:
    """Whether Ray's output is being sent to a log file (`ray_output_to`)."""
    return _log_file is not None


@contextlib.contextmanager
def ray_output_to(path: Path) -> Iterator[Path]:
    """Send Ray's loggers, its workers' forwarded output and what is written to file descriptor 2
    to `path` (appended) until the block ends; `sys.stderr` keeps writing to the terminal.

    Call `forward_worker_output()` after `ray.init` (the executor does): Ray installs its printer
    of worker output there.
    """
    global _log_file
    import ray.data  # noqa: F401  (configures the `ray` and `ray.data` loggers, which are swapped below)

    path.parent.mkdir(parents=True, exist_ok=True)
    out = open(path, "a", buffering=1, encoding="utf-8", errors="replace")
    out.write(f"==== voxhear run, pid {os.getpid()}, {time.strftime('%Y-%m-%d %H:%M:%S')} ====\n")
    loggers = _swap_ray_handlers(out)
    restore_fd = _redirect_fd2(out)
    _log_file = out
    try:
        yield path
    finally:
        _log_file = None
        _stop_forwarding()
        restore_fd()
        for logger, handlers in loggers:
            logger.handlers[:] = handlers
        out.close()


def forward_worker_output() -> None:
    """While `ray_output_to` is active: print Ray workers' forwarded output to the log instead of
    the terminal (Ray prints it to sys.stdout and sys.stderr, which stay on the terminal)."""
    out = _log_file
    if out is None:
        return
    try:
        from ray._private.ray_logging import global_worker_stdstream_dispatcher as dispatcher
        from ray._private.worker import print_worker_logs
    except ImportError:  # a Ray without these: its workers' output stays on the terminal
        log.debug("Ray's worker output cannot be sent to the log file", exc_info=True)
        return
    plain = _Uncoloured(out)

    def to_log(batch: dict[str, Any]) -> None:
        # Ray's own printer (prefixes, autoscaler events only), without its colours.
        if not out.closed:
            print_worker_logs(batch, plain)

    dispatcher.remove_handler("ray_print_logs")
    dispatcher.remove_handler(_FORWARD_HANDLER)
    dispatcher.add_handler(_FORWARD_HANDLER, to_log)


class _Uncoloured:
    """A text stream that drops ANSI colour codes on the way to `out`."""

    _CODES = re.compile(r"\x1b\[[0-9;]*m")

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def write(self, text: str) -> int:
        return self.out.write(self._CODES.sub("", text))

    def flush(self) -> None:
        self.out.flush()


def _stop_forwarding() -> None:
    with contextlib.suppress(ImportError):
        from ray._private.ray_logging import global_worker_stdstream_dispatcher

        global_worker_stdstream_dispatcher.remove_handler(_FORWARD_HANDLER)


def _swap_ray_handlers(out: TextIO) -> list[tuple[logging.Logger, list[logging.Handler]]]:
    """Ray's loggers write to the console through their own handlers (they do not propagate):
    each console handler is replaced by one writing to `out`. Returns what to restore."""
    handler = logging.StreamHandler(out)
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    swapped = []
    for name, logger in list(logging.Logger.manager.loggerDict.items()):
        if not isinstance(logger, logging.Logger) or not (name == "ray" or name.startswith("ray.")):
            continue
        consoles = [h for h in logger.handlers if _is_console(h)]
        if consoles:
            swapped.append((logger, list(logger.handlers)))
            logger.handlers[:] = [h for h in logger.handlers if h not in consoles] + [handler]
    return swapped


def _is_console(handler: logging.Handler) -> bool:
    if isinstance(handler, logging.FileHandler) or not isinstance(handler, logging.StreamHandler):
        return False
    # Ray's PlainRayHandler writes to whatever sys.stderr is when it emits.
    return handler.stream in (sys.stderr, sys.stdout, sys.__stderr__, sys.__stdout__) or (
        type(handler).__name__ == "PlainRayHandler"
    )


def _redirect_fd2(out: TextIO) -> Callable[[], None]:
    """Point file descriptor 2 (where Ray's C++ core and Ray's subprocesses write) at `out`; when
    sys.stderr is that descriptor, it and the logging handlers holding it move to a copy of the
    original descriptor, so that Python-level output (voxhear's) still reaches the terminal."""
    old = sys.stderr
    with contextlib.suppress(Exception):
        old.flush()
    saved = os.dup(2)
    terminal: TextIO | None = None
    moved: list[logging.StreamHandler] = []
    if _fileno(old) == 2:
        terminal = open(saved, "w", buffering=1, encoding=old.encoding, errors=old.errors, closefd=False)
        sys.stderr = terminal
        for handler in _stream_handlers():
            if handler.stream is old:
                handler.setStream(terminal)
                moved.append(handler)
    os.dup2(out.fileno(), 2)

    def restore() -> None:
        for stream in (terminal, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()  # type: ignore[union-attr]
        os.dup2(saved, 2)
        os.close(saved)
        if terminal is not None:
            sys.stderr = old
            for handler in moved:
                handler.setStream(old)
            terminal.close()

    return restore


def _fileno(stream: Any) -> int | None:
    try:
        return stream.fileno()
    except Exception:
        return None


def _stream_handlers() -> Iterator[logging.StreamHandler]:
    loggers = [logging.getLogger()] + [
        lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)
    ]
    for logger in loggers:
        for handler in logger.handlers:
            if isinstance(handler, logging.StreamHandler):
                yield handler
