"""Keep numpy's OpenBLAS on one thread around the tracker's small matrix work.

numpy's bundled OpenBLAS runs every product above about 64^3 multiply-adds on one thread per core and lets
those threads spin for a while after each call. Next to onnxruntime's own threads on a 2-core companion
computer, that spinning takes the network's core: one online-model update measured 22.6 ms with numpy's default
and 3.6 ms with one BLAS thread on this project's shared 2-core machine (the matrices are 512 x 512 at most, too
small to gain from threads). threadpoolctl does this in general; these are the few lines it takes for the
OpenBLAS that numpy wheels bundle (or a system libopenblas). Where neither is found it does nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
from collections.abc import Iterator
from pathlib import Path

__all__ = ["one_blas_thread"]

_SUFFIXES = ("scipy_openblas_{}64_", "scipy_openblas_{}_64_", "openblas_{}")


@functools.lru_cache(maxsize=1)
def _openblas() -> tuple[object, object] | None:
    """``(get_num_threads, set_num_threads)`` of the OpenBLAS numpy uses, or None."""
    import numpy as np

    candidates = sorted((Path(np.__file__).parent.parent / "numpy.libs").glob("*openblas*.so*"))
    system = ctypes.util.find_library("openblas")
    paths = [str(p) for p in candidates] + ([system] if system else [])
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for pattern in _SUFFIXES:
            get = getattr(lib, pattern.format("get_num_threads"), None)
            set_ = getattr(lib, pattern.format("set_num_threads"), None)
            if get is not None and set_ is not None:
                get.restype = ctypes.c_int
                set_.argtypes = [ctypes.c_int]
                return get, set_
    return None


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    """Within the block, numpy's OpenBLAS uses one thread; the previous count is restored after it."""
    functions = _openblas()
    if functions is None:
        yield
        return
    get, set_ = functions
    previous = int(get())
    if previous == 1:
        yield
        return
    set_(1)
    try:
        yield
    finally:
        set_(previous)
