"""Freed memory goes back to the operating system (#13)."""

from __future__ import annotations

import ctypes
import platform

import pytest

from consumer.member.allocator import release_free_memory


@pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only"
)
def test_on_glibc_free_pages_held_by_malloc_are_returned() -> None:
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    # 20,000 blocks of 4 KiB (below the mmap threshold: they come from the heap), 9 in 10
    # freed: the free pages sit between live blocks, where only malloc_trim releases them
    blocks = [libc.malloc(4096) for _ in range(20_000)]
    for i, block in enumerate(blocks):
        if i % 10:
            libc.free(block)
    before = _rss_kib()
    assert release_free_memory()
    after = _rss_kib()
    for block in blocks[::10]:
        libc.free(block)
    assert after < before - 40_000, f"RSS {before} KiB -> {after} KiB"


def _rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")
