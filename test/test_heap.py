"""The node's heap trimming (siammixer_ros/ros/heap.py) gives freed memory back to the system."""

from __future__ import annotations

import platform

import pytest

from siammixer_ros.ros.heap import trim_heap
from siammixer_ros.ros.stats import process_memory_bytes

MIB = 1 << 20


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_trim_heap_returns_freed_pages_that_glibc_keeps() -> None:
    # 96 MiB in 8 KiB blocks (below glibc's mmap threshold: heap memory, not mmaps), then a block after them so
    # the freed ones are not at the heap's top, where free() itself would give them back.
    blocks = [bytearray(8192) for _ in range(96 * MIB // 8192)]
    pin = bytearray(8192)
    del blocks
    kept, _ = process_memory_bytes()
    assert trim_heap() is True
    after, _ = process_memory_bytes()
    assert kept - after >= 64 * MIB, f"RSS {kept / MIB:.0f} MiB before the trim, {after / MIB:.0f} MiB after"
    assert len(pin) == 8192
