"""The process-wide CPU settings every entry point runs with, before JAX starts its backend.

- XLA_FLAGS gets the project's CPU defaults (xla_flags.py); XLA reads it when the backend starts.
- glibc keeps freed memory for reuse (host_memory.py), set before XLA's threads allocate; the tests
  turn it off (keep_freed_memory=False), since they measure it in subprocesses.
- OMP_WAIT_POLICY=PASSIVE unless set: oneDNN's OpenMP threads otherwise spin after each call, taking
  the cores from XLA's threads that run the fusions between convolutions; libgomp reads it once,
  when it loads.
"""

from __future__ import annotations

import os

from resnet_jax.cpu import host_memory, xla_flags


def apply(*, keep_freed_memory: bool = True) -> None:
    """Apply the settings to this process; harmless to call twice."""
    xla_flags.set_defaults()
    if keep_freed_memory:
        host_memory.keep_freed_memory()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
