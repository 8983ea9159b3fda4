"""release_memory hands freed heap back to the OS (what keeps a fleet loop's RSS flat)."""

from __future__ import annotations

import ctypes
import sys

import psutil
import pytest

from meshinsights.engine.memory import _libc, release_memory

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or _libc() is None, reason="needs glibc malloc_trim"
)


def _rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


def test_freed_heap_is_returned_to_the_os():
    libc = _libc()
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    # 200 MB in 4 KiB blocks (below the mmap threshold: they live in the heap), touched so
    # they are resident; freeing all but the last leaves a hole glibc keeps for reuse.
    blocks = [libc.malloc(4096) for _ in range(50_000)]
    for b in blocks:
        ctypes.memset(b, 1, 4096)
    for b in blocks[:-1]:
        libc.free(b)
    held = _rss_mb()

    assert release_memory() is True
    released = held - _rss_mb()
    libc.free(blocks[-1])
    assert released > 150, f"only {released:.0f} MB of ~200 MB freed heap returned"
