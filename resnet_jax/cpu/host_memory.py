"""Keep freed host memory in the process, so XLA:CPU's per-step scratch buffer is not mapped afresh
every step.

    from resnet_jax.cpu import host_memory
    # first thing in an entry point's main(), before JAX starts its threads
    host_memory.keep_freed_memory()

Why: XLA:CPU allocates one scratch buffer per execution (about 200 MB for the ResNet-20 train step
at batch
128) and frees it when the step ends. glibc serves an allocation that large with a fresh `mmap` and
returns it with `munmap`, so every step starts on untouched pages: ~49,000 page faults and ~0.17 s
of kernel time per ResNet-20 step on 2 cores (docs/performance_notes.md, attempt 29, measures it and
what it cost). Told to use one heap (`M_ARENA_MAX=1`; XLA allocates from its worker threads, whose
own arenas cannot hold more than 64 MB), never to `mmap` (`M_MMAP_MAX=0`) and never to give the top
of the heap back (`M_TRIM_THRESHOLD`), glibc hands the same pages to the next step. The price: the
process keeps its peak heap until it exits, which a training or benchmark process does anyway.

glibc only (elsewhere this does nothing). `RESNET_JAX_KEEP_FREED_MEMORY=0` turns it off, for
comparisons.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
import warnings

# mallopt parameters, from glibc's <malloc.h>.
M_TRIM_THRESHOLD, M_MMAP_MAX, M_ARENA_MAX = -1, -4, -8
ENV = "RESNET_JAX_KEEP_FREED_MEMORY"
_applied = False


def wanted() -> bool:
    """Whether keep_freed_memory applies here: glibc, and not turned off by
    RESNET_JAX_KEEP_FREED_MEMORY=0."""
    return os.environ.get(ENV, "1") != "0" and platform.libc_ver()[0] == "glibc"


def keep_freed_memory() -> bool:
    """Set glibc's malloc to reuse freed memory instead of unmapping it; True if it is now set.

    Call it before the first JAX computation: arenas are fixed when a thread first allocates, and
    XLA's worker threads start with the backend. Calling it again is harmless.
    """
    global _applied
    if _applied:
        return True
    if not wanted():
        return False
    from jax._src import xla_bridge  # private, but the only way to know whether XLA's threads exist

    if xla_bridge.backends_are_initialized():
        warnings.warn(
            "host_memory.keep_freed_memory() after JAX's backend started: XLA's threads already "
            "have "
            "their own malloc arenas, whose large blocks are still mapped afresh; call it before "
            "the "
            "first jax computation.",
            stacklevel=2,
        )
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    # mallopt returns 1 on success; the value is an int, so the largest trim threshold is 2**31 - 1.
    settings = ((M_ARENA_MAX, 1), (M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, 2**31 - 1))
    _applied = all(libc.mallopt(param, value) == 1 for param, value in settings)
    return _applied
