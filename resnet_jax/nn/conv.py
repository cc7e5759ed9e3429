"""2-D convolution over NHWC arrays: a pure function, and a thin Flax Linen module around it.

`conv2d` is cross-correlation, as every deep-learning framework computes it; `flip=True` turns the
kernel by 180 degrees and gives true (mathematical) convolution. Shapes are checked with
`shapes.output_size` before anything reaches XLA, so a bad configuration fails with the layer's name
and the formula.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from resnet_jax.nn.arrays import FeatureMap, Images, Kernel, shape_checked
from resnet_jax.nn.shapes import PaddingLike, ShapeError, output_size, resolve_padding

IntPair = int | Sequence[int]
# One padding for both spatial dims, or ((low_h, high_h), (low_w, high_w)) / (pad_h, pad_w) forms
# per dim.
Padding = PaddingLike | Sequence[PaddingLike]

# Who computes a convolution once conv2d has checked and resolved its arguments: called as
# backend(x, kernel, stride=(sh, sw), padding=((lo_h, hi_h), (lo_w, hi_w)), dilation=(dh, dw),
# groups=g),
# x [N, H, W, C] and kernel [KH, KW, C // g, K] already flipped and cast. `xla_conv` by default; the
# entry points may pass another (resnet_jax.cpu.onednn.conv_backend), so a model never names a
# kernel library.
ConvBackend = Callable[..., jax.Array]

# He-normal over fan-out, torchvision's ResNet initialisation.
he_normal_fan_out = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def pair(value: IntPair, name: str = "value") -> tuple[int, int]:
    """(h, w) from an int or a two-element sequence."""
    if isinstance(value, int) and not isinstance(value, bool):
        return (value, value)
    values = tuple(value)
    if len(values) != 2:
        raise ValueError(f"{name} must be an int or an (h, w) pair, got {value!r}.")
    return values  # type: ignore[return-value]


def padding_per_dim(padding: Padding) -> tuple[PaddingLike, PaddingLike]:
    """Split a padding argument into the padding of H and of W.

    A string, an int or a flat (low, high) pair applies to both dims; a pair of pairs gives each
    dim its own.
    """
    if isinstance(padding, (str, int)):
        return (padding, padding)
    parts = tuple(padding)
    if len(parts) == 2 and all(isinstance(p, int) for p in parts):
        return (parts, parts)  # one (low, high) pair for both dims
    if len(parts) == 2:
        return (parts[0], parts[1])
    raise ValueError(
        f"Padding must be a string, an int, a (low, high) pair, or one padding per spatial dim; "
        f"got {padding!r}."
    )


def explicit_padding(
    padding: Padding,
    spatial: Sequence[int],
    kernel: Sequence[int],
    stride: Sequence[int],
    dilation: Sequence[int],
) -> list[tuple[int, int]]:
    """[(low_h, high_h), (low_w, high_w)] for any padding form."""
    return [
        resolve_padding(p, n, k, s, d)
        for p, n, k, s, d in zip(padding_per_dim(padding), spatial, kernel, stride, dilation)
    ]


def spatial_output(
    layer: str | None,
    spatial: Sequence[int],
    kernel: Sequence[int],
    stride: Sequence[int],
    pads: Sequence[tuple[int, int]],
    dilation: Sequence[int],
) -> tuple[int, int]:
    """(H_out, W_out) through `output_size`, raising ShapeError naming `layer` if either is
    empty."""
    return tuple(
        output_size(n, k, s, p, d, layer=layer)  # type: ignore[return-value]
        for n, k, s, p, d in zip(spatial, kernel, stride, pads, dilation)
    )


def xla_conv(
    x: jax.Array,
    kernel: jax.Array,
    *,
    stride: tuple[int, int],
    padding: Sequence[tuple[int, int]],
    dilation: tuple[int, int],
    groups: int,
) -> jax.Array:
    """The default ConvBackend: XLA's own convolution. [N, H, W, C] * [KH, KW, C // groups, K] ->
    [N, H', W', K]."""
    return jax.lax.conv_general_dilated(
        x,
        kernel,
        window_strides=stride,
        padding=padding,
        rhs_dilation=dilation,
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=groups,
    )


@shape_checked
def conv2d(
    x: Images,
    kernel: Kernel,
    *,
    stride: IntPair = 1,
    padding: Padding = 0,
    dilation: IntPair = 1,
    groups: int = 1,
    flip: bool = False,
    layer: str | None = None,
    backend: ConvBackend | None = None,
) -> FeatureMap:
    """Cross-correlate (or, with flip=True, convolve) a batch of images with a kernel.

    Args:
      x: [N, H, W, C] images. kernel: [KH, KW, C // groups, K] filters. stride, dilation: int or (h,
      w). padding: 'SAME' | 'VALID' | 'CIRCULAR' | 'REFLECT' | p | (low, high) | one of those per
      spatial dim. groups: channel groups; C and K must both divide by it (groups == C is a
      depthwise conv). flip: rotate the kernel by 180 degrees first (true convolution). layer: name
      used in error messages. backend: who computes it (see ConvBackend); None is `xla_conv`. Any
      backend gives the same numbers
        within rounding.
    Returns:
      [N, H', W', K] with H' = output_size(H, KH, stride, padding, dilation), likewise W'.
    """
    where = f"Layer '{layer}': " if layer else ""
    if x.ndim != 4 or kernel.ndim != 4:
        raise ShapeError(
            f"{where}conv2d wants x [N, H, W, C] and kernel [KH, KW, C/groups, K]; "
            f"got x {tuple(x.shape)} and kernel {tuple(kernel.shape)}."
        )
    n, h, w, c = x.shape
    kh, kw, kc, k = kernel.shape
    if groups < 1 or c % groups or k % groups:
        raise ShapeError(
            f"{where}groups={groups} must divide both input channels {c} and output channels {k}."
        )
    if kc * groups != c:
        raise ShapeError(
            f"{where}kernel expects {kc * groups} input channels ({kc} per group x {groups} "
            "groups) "
            f"but the input has {c}."
        )
    strides, dilations = pair(stride, "stride"), pair(dilation, "dilation")
    pads = explicit_padding(padding, (h, w), (kh, kw), strides, dilations)
    # raises before XLA sees a bad shape
    spatial_output(layer, (h, w), (kh, kw), strides, pads, dilations)

    mode = padding.upper() if isinstance(padding, str) else None
    if mode in ("CIRCULAR", "REFLECT"):
        x = jnp.pad(x, [(0, 0), *pads, (0, 0)], mode="wrap" if mode == "CIRCULAR" else "reflect")
        pads = [(0, 0), (0, 0)]
    if flip:
        kernel = kernel[::-1, ::-1]

    compute = backend or xla_conv
    return compute(x, kernel, stride=strides, padding=pads, dilation=dilations, groups=groups)


class Conv2D(nn.Module):
    """Linen module around `conv2d`: params {'kernel': [KH, KW, C // groups, K], 'bias': [K] if
    use_bias}."""

    features: int
    kernel_size: IntPair = 3
    stride: IntPair = 1
    padding: Padding = 0
    dilation: IntPair = 1
    groups: int = 1
    use_bias: bool = False
    flip: bool = False
    backend: ConvBackend | None = None  # who computes it, see conv2d; None is XLA's
    dtype: Any = None  # computation dtype (e.g. jnp.bfloat16); params stay in param_dtype
    param_dtype: Any = jnp.float32
    kernel_init: Callable = he_normal_fan_out
    bias_init: Callable = nn.initializers.zeros

    @shape_checked
    @nn.compact
    def __call__(self, x: Images) -> FeatureMap:
        c = x.shape[-1]
        layer = "/".join(self.path) or self.name
        if self.groups < 1 or c % self.groups:
            raise ShapeError(
                f"Layer '{layer}': groups={self.groups} does not divide the {c} input channels."
            )
        kh, kw = pair(self.kernel_size, "kernel_size")
        kernel = self.param(
            "kernel", self.kernel_init, (kh, kw, c // self.groups, self.features), self.param_dtype
        )
        dtype = self.dtype or x.dtype
        y = conv2d(
            x.astype(dtype),
            kernel.astype(dtype),
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
            groups=self.groups,
            flip=self.flip,
            layer=layer,
            backend=self.backend,
        )
        if self.use_bias:
            bias = self.param("bias", self.bias_init, (self.features,), self.param_dtype)
            y = y + bias.astype(dtype).reshape(1, 1, 1, -1)
        return y
