"""Peak resident memory of this process over a stretch of work (a stage's call on its rows).

Linux keeps the high-water mark of a process's resident set (VmHWM in /proc/self/status) and
lets the process reset it to the current size (writing 5 to /proc/self/clear_refs, Linux 4.0+),
so the peak of one stage call is measured without sampling: reset, run, read. Where the reset is
not allowed the mark is the process's lifetime peak (getrusage), which is an upper bound.
Children (ffmpeg) are not included: their memory is their own and small next to the models'.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import resource
import sys

_CLEAR_REFS = "/proc/self/clear_refs"
_STATUS = "/proc/self/status"


def reset_peak() -> bool:
    """Make the high-water mark the current resident size; False where that is not possible."""
    try:
        with open(_CLEAR_REFS, "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def peak_mb() -> float:
    """The resident-set high-water mark in MB (since the last reset_peak, where it worked)."""
    try:
        with open(_STATUS) as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, kB on Linux


def _glibc_malloc_trim():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError):
        return None


_MALLOC_TRIM = _glibc_malloc_trim() if sys.platform.startswith("linux") else None


def release_free_memory() -> None:
    """Hand the allocator's free pages back to the system (glibc `malloc_trim`).

    A stage call allocates and frees hundreds of MB in many sizes (frames, crops, audio pieces);
    glibc keeps freed memory in its arenas, so without this a long-lived worker's resident size
    ratchets up with every input it has processed (about 300 MB per 20 s input measured in-process
    over six inputs) although nothing is referenced any more.
    """
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)
