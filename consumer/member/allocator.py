"""Hand freed memory back to the operating system. [io]

glibc's malloc keeps what is freed in its arenas (one per thread that allocated: librdkafka's
broker threads fill theirs with prefetched records); a member that has been through a backlog
would otherwise keep the high-water mark as RSS and creep as fragmentation grows. `malloc_trim`
returns the free pages. Elsewhere than glibc this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable


def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim: Callable[[int], int] = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None
    return trim


_TRIM = _malloc_trim()


def release_free_memory() -> bool:
    """Return malloc's free pages to the OS; False where that is not possible."""
    if _TRIM is None:
        return False
    _TRIM(0)
    return True
