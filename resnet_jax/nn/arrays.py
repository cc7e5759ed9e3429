"""Shape annotations of the public modules (jaxtyping), checked where RESNET_JAX_CHECK_SHAPES=1.

    def conv2d(x: Images, kernel: Kernel, ...) -> Float[Array, "n oh ow k"]

A letter names one size across a call's arguments and result: `n` of the images is `n` of the
logits. `shape_checked` makes a function check its annotations (jaxtyping + beartype) when the
variable is set as the module is imported (the tests set it); otherwise it returns the function
itself, so a run pays nothing. Under `jax.jit` a check runs once, while tracing.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeVar

import jax
import numpy as np
from jaxtyping import Array, Float

# Inputs may be NumPy or JAX arrays (tracers included); results are JAX arrays.
ArrayIn = np.ndarray | jax.Array
Images = Float[ArrayIn, "n h w c"]  # [N, H, W, C], NHWC as everywhere here
Kernel = Float[ArrayIn, "kh kw cg k"]  # [KH, KW, C // groups, K]
FeatureMap = Float[Array, "n oh ow k"]  # a layer's output: N kept, the rest set by the layer
Pooled = Float[Array, "n oh ow c"]  # a pooling's output: channels kept
Features = Float[Array, "n c"]  # global pooling's output
Logits = Float[Array, "n classes"]

CHECK_SHAPES = os.environ.get("RESNET_JAX_CHECK_SHAPES", "") not in ("", "0")

F = TypeVar("F", bound=Callable)


def shape_checked(fn: F) -> F:
    """fn checking its annotations on every call (with RESNET_JAX_CHECK_SHAPES=1), or fn itself."""
    if not CHECK_SHAPES:
        return fn
    from beartype import beartype  # the checker: a test dependency, not a core one
    from jaxtyping import jaxtyped

    return jaxtyped(typechecker=beartype)(fn)


__all__ = ["FeatureMap", "Features", "Images", "Kernel", "Logits", "Pooled", "shape_checked"]
