"""XLA flags the project runs with by default, set before JAX creates its backend.

    from resnet_jax.cpu import xla_flags
    xla_flags.set_defaults()   # first thing in an entry point's main(), before any jax computation

XLA reads XLA_FLAGS once, when the first computation creates the backend; importing jax is harmless.
A flag the user already put in XLA_FLAGS wins over the default. docs/performance_notes.md has the
measurements.
"""

from __future__ import annotations

import os
import warnings

# XLA:CPU only (the GPU compiler ignores both). Measured on 2 Sapphire Rapids cores, jaxlib 0.10.2:
# - YNNPACK only for reductions: its convolutions (on by default) ran the ResNet train steps
# 1.3-1.6x slower than XLA's Eigen convolutions, and keeping 'reduce' stops XLA turning BatchNorm's
# reductions into slow    reduce-windows (TreeReductionRewriter). Not here:
# `--xla_backend_extra_options=xla_cpu_use_multi_output_fusion` was 7% faster but miscompiles the
# one-device train step (a loss 1.7% off; tests/test_parallel.py catches it), see
# docs/performance_notes.md.
CPU_DEFAULTS: dict[str, str] = {
    "--xla_cpu_experimental_ynn_fusion_type": "reduce",
}


def set_defaults(defaults: dict[str, str] | None = None) -> str:
    """Append each default flag that XLA_FLAGS does not already set; returns the resulting
    XLA_FLAGS."""
    defaults = CPU_DEFAULTS if defaults is None else defaults
    current = os.environ.get("XLA_FLAGS", "")
    present = {f.split("=")[0] for f in current.split()}
    missing = [f"{k}={v}" for k, v in defaults.items() if k not in present]
    if missing:
        from jax._src import xla_bridge  # private, but the only way to know whether it is too late

        if xla_bridge.backends_are_initialized():
            warnings.warn(
                f"JAX's backend already exists, so XLA flags {missing} have no effect; call "
                f"xla_flags.set_defaults() before the first jax computation.",
                stacklevel=2,
            )
        os.environ["XLA_FLAGS"] = " ".join([current, *missing]).strip()
    return os.environ.get("XLA_FLAGS", "")
