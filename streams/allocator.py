"""glibc's malloc in a worker: memory freed is handed back, so RSS tracks what is in use.

The worker's threads (aiokafka's consumer thread, RocksDB's flush and compaction threads, the event
loop) each get their own malloc arena, up to 8 per core, and glibc returns freed memory of an arena
to the system only when its top is free. In a soak the worker's Python heap and RocksDB memory were
flat while RSS kept rising 8 MB a minute. Two arenas, and a trim every few seconds (a few ms),
keep RSS to what is used, so a leak shows as one. Elsewhere (macOS, musl) both are no-ops.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from typing import Any

M_ARENA_MAX = -8  # mallopt parameter (malloc.h)


def _libc() -> Any | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


_LIBC = _libc()


def limit_arenas(arenas: int = 2) -> bool:
    """Before the worker starts its threads: at most `arenas` malloc arenas."""
    return bool(_LIBC is not None and _LIBC.mallopt(M_ARENA_MAX, arenas))


def trim() -> bool:
    """Hand free memory of every arena back to the system; True if some was."""
    return bool(_LIBC is not None and _LIBC.malloc_trim(0))
