"""This process's memory: what it holds (from /proc) and giving the C heap's free pages back."""

from __future__ import annotations

import contextlib
import ctypes
import os
from functools import cache
from pathlib import Path


def resident_mb(pid: int | None = None) -> float:
    """This process's resident memory (or process ``pid``'s), from /proc (infinite where there
    is none: never keep)."""
    try:
        statm = Path(f"/proc/{pid or 'self'}/statm").read_bytes()
        resident_pages = int(statm.split()[1])
    except (OSError, IndexError, ValueError):
        return float("inf")
    return resident_pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def address_space_mb() -> float:
    """This process's virtual memory size (what RLIMIT_AS caps), from /proc; infinite without."""
    try:
        pages = int(Path("/proc/self/statm").read_bytes().split()[0])
    except OSError:
        return float("inf")
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


@cache
def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim  # noqa: B018 (not glibc: no malloc_trim)
    except (OSError, AttributeError):
        return None
    return libc


def release_free_memory() -> None:
    """Give the C heap's free pages back to the system. glibc keeps them otherwise: after a
    heavy window or batch the process would stay at its peak for good, and the next one would
    start from there."""
    libc = _libc()
    if libc is not None:
        with contextlib.suppress(OSError):
            libc.malloc_trim(0)


# mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD_BYTES = 128 * 1024
_TRIM_THRESHOLD_BYTES = 256 * 1024


def tune_allocator() -> None:
    """Fixed glibc thresholds for an app process: buffers of 128 KiB and up (a response body, a
    window's encoded messages) are mapped and unmapped on their own, and the heap's top goes back
    past 256 KiB. glibc's default raises both after each large free, so such buffers then come
    from the heap, whose holes stay resident (embed's peak: 155-160 MB with the default, 145-151
    MB with these, on the bench's 3,000-page slice). MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_
    THRESHOLD_ in the environment still win."""
    libc = _libc()
    if libc is None:
        return
    if "MALLOC_MMAP_THRESHOLD_" not in os.environ:
        libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES)
    if "MALLOC_TRIM_THRESHOLD_" not in os.environ:
        libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD_BYTES)
