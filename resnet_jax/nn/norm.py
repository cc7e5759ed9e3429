"""BatchNorm over the batch and spatial axes of NHWC activations, with the ReLU that usually
follows it.

The variables are flax.linen.BatchNorm's (params `scale`, `bias`; batch_stats `mean`, `var`), and so
are the values: statistics in float32 as E[x^2] - E[x]^2, clipped at 0, averaged over `axis_name`
under pmap; running averages `momentum * old + (1 - momentum) * new`, not updated during init. What
differs is the training step's gradient: written by hand (`batch_norm`) so that XLA stores no
activation-sized intermediate between the forward and backward passes, and ReLU passed in as
`relu=True` so its mask is recomputed rather than stored (docs/performance_notes.md, attempt 25).

    y = BatchNorm(use_running_average=not train)(x, relu=True)   # relu(BN(x))
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp


class BatchNorm(nn.Module):
    """BatchNorm of [..., C] over every axis but the last; `relu=True` at call time applies max(0,
    .) after."""

    use_running_average: bool = False
    momentum: float = 0.9
    epsilon: float = 1e-5
    dtype: Any = None  # output dtype; statistics are float32 regardless
    axis_name: str | None = None  # pmap axis for cross-replica statistics
    scale_init: Callable = nn.initializers.ones
    bias_init: Callable = nn.initializers.zeros

    @nn.compact
    def __call__(self, x: jax.Array, relu: bool = False) -> jax.Array:
        features = (x.shape[-1],)
        ra_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros(features, jnp.float32))
        ra_var = self.variable("batch_stats", "var", lambda: jnp.ones(features, jnp.float32))
        scale = self.param("scale", self.scale_init, features, jnp.float32)
        bias = self.param("bias", self.bias_init, features, jnp.float32)
        dtype = self.dtype or jnp.result_type(x, jnp.float32)
        if self.use_running_average:
            y = _normalize(x, ra_mean.value, ra_var.value, scale, bias, self.epsilon).astype(dtype)
            return nn.relu(y) if relu else y
        initializing = self.is_initializing()
        axis_name = None if initializing else self.axis_name  # no mapped axis exists during init
        y, mean, var = batch_norm(
            x, scale, bias, epsilon=self.epsilon, relu=relu, axis_name=axis_name
        )
        if not initializing:
            ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * mean
            ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * var
        return y.astype(dtype)


def _statistics(x: jax.Array, axis_name: str | None) -> tuple[jax.Array, jax.Array]:
    """Per-channel mean and biased variance in float32, as E[x^2] - E[x]^2 (clipped at 0), one
    pass."""
    x = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    axes = tuple(range(x.ndim - 1))
    mean, mean_sq = x.mean(axes), (x * x).mean(axes)
    if axis_name is not None:
        mean, mean_sq = jax.lax.pmean(jnp.stack([mean, mean_sq]), axis_name)
    return mean, jnp.maximum(0.0, mean_sq - mean * mean)


def _normalize(x, mean, var, scale, bias, epsilon):
    """(x - mean) * (scale / sqrt(var + epsilon)) + bias, in the order flax computes it."""
    multiplier = jax.lax.rsqrt(var + epsilon) * scale
    return (x - _channels(mean, x)) * _channels(multiplier, x) + _channels(bias, x)


def _channels(values: jax.Array, x: jax.Array) -> jax.Array:
    """[C] -> [1, ..., 1, C], to broadcast against x explicitly (the tests forbid implicit rank
    promotion)."""
    return values.reshape((1,) * (x.ndim - 1) + values.shape)


def batch_norm(
    x: jax.Array,
    scale: jax.Array,
    bias: jax.Array,
    *,
    epsilon: float,
    relu: bool = False,
    axis_name: str | None = None,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Training-mode BatchNorm (+ ReLU) of [..., C] with a hand-written gradient; (y, mean, var), y
    float32.

    The values are `_normalize`'s. The gradient keeps only x and the per-channel statistics from the
    forward pass: autodiff of the formula would store x - mean as well (one more activation-sized
    write and read per BatchNorm), and the ReLU mask is recomputed from x. mean and var carry no
    gradient (they feed the running averages). Under pmap, `axis_name` makes the statistics, and the
    gradient's means, cross-replica.
    """
    y, mean, var = _batch_norm(x, scale, bias, float(epsilon), bool(relu), axis_name)
    return y, jax.lax.stop_gradient(mean), jax.lax.stop_gradient(var)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4, 5))
def _batch_norm(x, scale, bias, epsilon, relu, axis_name):
    return _batch_norm_forward(x, scale, bias, epsilon, relu, axis_name)[0]


def _batch_norm_forward(x, scale, bias, epsilon, relu, axis_name):
    mean, var = _statistics(x, axis_name)
    y = _normalize(x.astype(jnp.float32), mean, var, scale, bias, epsilon)
    return ((jnp.maximum(y, 0.0) if relu else y), mean, var), (x, scale, bias, mean, var)


def _batch_norm_backward(epsilon, relu, axis_name, residuals, cotangents):
    x, scale, bias, mean, var = residuals
    dy = cotangents[0]  # mean and var leave through stop_gradient: their cotangents are zero
    xf = x.astype(jnp.float32)
    if relu:  # the forward's own expression, so the mask is exactly where y was clipped
        dy = jnp.where(_normalize(xf, mean, var, scale, bias, epsilon) > 0, dy, 0.0)
    # With x_hat = (x - mean) * inv: dx = scale * inv * (dy - E[dy] - x_hat * E[dy * x_hat]),
    # written as a * dy + b * x + c per channel, and E[dy * x_hat] = inv * (E[dy * x] - mean *
    # E[dy]): two passes over x and dy (the sums, then dx), and no activation-sized intermediate for
    # XLA to store between them.
    inv = jax.lax.rsqrt(var + epsilon)
    axes = tuple(range(x.ndim - 1))
    mean_dy, mean_dy_x = dy.mean(axes), (dy * xf).mean(axes)
    mean_dy_x_hat = inv * (mean_dy_x - mean * mean_dy)
    count = x.size // x.shape[-1]
    # this replica's sums, as autodiff would give
    dbias, dscale = (
        mean_dy * count,
        mean_dy_x_hat * count,
    )
    if axis_name is not None:
        mean_dy, mean_dy_x_hat = jax.lax.pmean(jnp.stack([mean_dy, mean_dy_x_hat]), axis_name)
    a = scale * inv
    b = -a * inv * mean_dy_x_hat
    c = -a * mean_dy - b * mean
    dx = _channels(a, x) * dy + _channels(b, x) * xf + _channels(c, x)
    return dx.astype(x.dtype), dscale, dbias


_batch_norm.defvjp(_batch_norm_forward, _batch_norm_backward)
