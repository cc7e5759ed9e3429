"""Spatial pooling over NHWC arrays, with the same padding forms and shape checks as `conv2d`."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from resnet_jax.nn.arrays import Features, Images, Pooled, shape_checked
from resnet_jax.nn.conv import IntPair, Padding, explicit_padding, pair, spatial_output


@shape_checked
def max_pool2d(
    x: Images,
    window: IntPair = 3,
    *,
    stride: IntPair = 2,
    padding: Padding = 1,
    layer: str | None = None,
) -> Pooled:
    """Max over windows; padded pixels are -inf, so they never win (PyTorch's MaxPool2d semantics).

    Args:
      x: [N, H, W, C].
    Returns:
      [N, H', W', C], H' = output_size(H, window, stride, padding).
    """
    n, h, w, c = x.shape
    windows, strides = pair(window, "window"), pair(stride, "stride")
    pads = explicit_padding(padding, (h, w), windows, strides, (1, 1))
    spatial_output(layer, (h, w), windows, strides, pads, (1, 1))
    return jax.lax.reduce_window(
        x, -jnp.inf, jax.lax.max, (1, *windows, 1), (1, *strides, 1), [(0, 0), *pads, (0, 0)]
    )


class MaxPool2D(nn.Module):
    """Linen module around `max_pool2d` (no parameters); a module so that the trace sees it."""

    window: IntPair = 3
    stride: IntPair = 2
    padding: Padding = 1

    @shape_checked
    def __call__(self, x: Images) -> Pooled:
        return max_pool2d(
            x,
            self.window,
            stride=self.stride,
            padding=self.padding,
            layer="/".join(self.path) or self.name,
        )


class GlobalAvgPool(nn.Module):
    """Mean over H and W: [N, H, W, C] -> [N, C]."""

    @shape_checked
    def __call__(self, x: Images) -> Features:
        return jnp.mean(x, axis=(1, 2))
