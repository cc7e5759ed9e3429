"""Stochastic depth (Huang et al. 2016): in training, a block's residual branch is dropped for
whole examples.

    # each example's branch kept with probability 1 - rate, then / (1 - rate)
    y = drop_path(residual, rate, key)
    drop_path_rates(0.2, 8)                # [0.025, 0.05, ..., 0.2]: the linear rule over depth

Dividing the kept branches by 1 - rate keeps their expectation, so evaluation uses every branch
unscaled (timm's convention; the paper scales at test time instead, which computes the same
function).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp


def drop_path(x: jax.Array, rate: float, key: jax.Array) -> jax.Array:
    """x [N, ...] with each example zeroed with probability `rate`, the others divided by 1 -
    rate."""
    keep = 1.0 - rate
    kept = jax.random.bernoulli(key, keep, (x.shape[0],) + (1,) * (x.ndim - 1))  # [N, 1, 1, 1]
    return jnp.where(kept, x / jnp.asarray(keep, x.dtype), jnp.zeros((), x.dtype))


def drop_path_rates(rate: float, num_blocks: int) -> list[float]:
    """The linear rule: block l of L (from 1) drops with probability rate * l / L; the last one
    with `rate`."""
    return [rate * (index + 1) / num_blocks for index in range(num_blocks)]


class DropPath(nn.Module):
    """drop_path with a key from the 'drop_path' RNG stream; the identity when `deterministic` or
    rate is 0."""

    rate: float = 0.0
    deterministic: bool = True

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if self.deterministic or self.rate == 0.0:
            return x
        return drop_path(x, self.rate, self.make_rng("drop_path"))
