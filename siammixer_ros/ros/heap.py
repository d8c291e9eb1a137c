"""Returning the node process's freed heap pages to the system (glibc malloc_trim; no rclpy import).

glibc keeps freed memory in the process: every thread that allocates gets its own arena (rclpy's executor, the
DDS middleware's threads, the processing thread), and pages freed inside an arena's heap stay resident until
``malloc_trim`` gives them back. Harmless where glibc is absent (musl, macOS): :func:`trim_heap` then does nothing.
"""

from __future__ import annotations

import ctypes
import functools
from typing import Any


@functools.cache
def _libc() -> Any | None:
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        return libc
    except (OSError, AttributeError):  # not glibc
        return None


def trim_heap() -> bool:
    """Return freed heap pages of every arena to the system (glibc's malloc_trim(0)). True if memory was released."""
    libc = _libc()
    return bool(libc is not None and libc.malloc_trim(0))
