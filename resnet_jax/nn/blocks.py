"""Residual blocks (He et al. 2015, 2016) and their plain twins.

Four blocks: basic (two 3x3), bottleneck (1x1-3x3-1x1, 4x expansion), and the pre-activation (v2)
versions of both. Each takes a `shortcut`:
  'A'    identity; when the shape changes, strided subsampling and zero-padded extra channels (no
  params).
  'B'    identity, and a 1x1 projection (+ BN) only where the shape changes.
  'C'    a 1x1 projection (+ BN) on every block.
  'none' no shortcut at all: the plain network of the degradation study, same layers and parameters
         as 'A' (so plain-vs-residual compares like with like).
`conv` and `norm` are partials (see resnet.py) carrying padding mode, dtype and BatchNorm settings.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from resnet_jax.nn.arrays import FeatureMap, Images, shape_checked
from resnet_jax.nn.shapes import ShapeError

ModuleDef = Any
SHORTCUTS = ("A", "B", "C", "none")


def _subsample_and_pad(x: jax.Array, features: int, stride: int, layer: str) -> jax.Array:
    """Option A: [N, H, W, C] -> [N, ceil(H/s), ceil(W/s), features], new channels zero (half each
    side)."""
    if stride > 1:
        x = x[:, ::stride, ::stride, :]
    extra = features - x.shape[-1]
    if extra < 0:
        raise ShapeError(
            f"Block '{layer}': shortcut 'A' cannot reduce {x.shape[-1]} channels to {features}; "
            f"use shortcut 'B' or 'C' (a projection)."
        )
    if extra:
        x = jnp.pad(x, [(0, 0), (0, 0), (0, 0), (extra // 2, extra - extra // 2)])
    return x


def shortcut_path(
    module: nn.Module,
    x: jax.Array,
    features: int,
    stride: int,
    kind: str,
    conv: ModuleDef,
    norm: ModuleDef | None,
    project_from: jax.Array | None = None,
) -> jax.Array | None:
    """The shortcut branch of `module`'s block, or None for a plain block.

    Projections are named `shortcut_conv` / `shortcut_bn` inside the block and read `project_from`
    (pre-activation blocks pass their BN-ReLU'd input) or else `x`; `norm=None` projects without a
    BatchNorm.
    """
    if kind not in SHORTCUTS:
        raise ValueError(f"Unknown shortcut {kind!r}: use one of {SHORTCUTS}.")
    if kind == "none":
        return None
    changes_shape = stride != 1 or x.shape[-1] != features
    if kind == "C" or (kind == "B" and changes_shape):
        x = conv(features, kernel_size=1, stride=stride, name="shortcut_conv")(
            x if project_from is None else project_from
        )
        return norm(name="shortcut_bn")(x) if norm is not None else x
    return _subsample_and_pad(x, features, stride, "/".join(module.path))


def add_shortcut(module: nn.Module, residual: jax.Array, shortcut: jax.Array | None) -> jax.Array:
    """residual + shortcut, with a clear error when the two branches disagree in shape; the
    residual branch goes through the block's drop-path (stochastic depth) when it has one."""
    if shortcut is None:
        return residual
    if getattr(module, "drop_path", None) is not None:
        residual = module.drop_path(name="drop_path")(residual)
    if residual.shape != shortcut.shape:
        raise ShapeError(
            f"Block '{'/'.join(module.path)}': residual branch {tuple(residual.shape)} and "
            "shortcut "
            f"{tuple(shortcut.shape)} cannot be added; check the block's stride, padding and "
            f"channels (each conv's output follows shapes.output_size)."
        )
    return residual + shortcut.astype(residual.dtype)


def _bn_act(norm: ModuleDef, name: str, x: jax.Array, act: Callable) -> jax.Array:
    """act(BatchNorm(x)); ReLU goes into the BatchNorm call, which fuses it where it can
    (norm.py)."""
    if act is nn.relu:
        return norm(name=name)(x, relu=True)
    return act(norm(name=name)(x))


def _last_norm(norm: ModuleDef, zero_init: bool) -> ModuleDef:
    """The block's last BatchNorm; zero scale makes the block start as its shortcut (Goyal et al.
    2017)."""
    return functools.partial(norm, scale_init=nn.initializers.zeros) if zero_init else norm


class Block(nn.Module):
    """The fields every block has: width, the first conv's stride, the shortcut kind, and the conv
    and norm partials (resnet.py) with the activation. Subclasses define `__call__`; a researcher's
    own block can too."""

    features: int
    stride: int = 1
    shortcut: str = "B"
    conv: ModuleDef = None
    norm: ModuleDef = None
    act: Callable = nn.relu
    zero_init_last: bool = False
    drop_path: ModuleDef = (
        None  # stochastic depth on the residual branch (drop_path.DropPath partial), or None
    )
    # Not fields: what the ResNet around a block needs to know of its kind.
    preactivation = (
        False  # BN-ReLU before each conv: the ResNet then adds a final BN-ReLU before the pool
    )
    layers = 2  # weighted layers per block, for the depth rule (6n+2 with 2, 9n+2 with 3)
    expansion = 1  # output channels / features


class BasicBlock(Block):
    """conv3x3(stride) - BN - ReLU - conv3x3 - BN, + shortcut, ReLU.  [N, H, W, C] -> [N, H/s, W/s,
    features]."""

    @shape_checked
    @nn.compact
    def __call__(self, x: Images) -> FeatureMap:
        y = _bn_act(
            self.norm, "bn1", self.conv(self.features, 3, self.stride, name="conv1")(x), self.act
        )
        y = self.conv(self.features, 3, name="conv2")(y)
        y = _last_norm(self.norm, self.zero_init_last)(name="bn2")(y)
        sc = shortcut_path(self, x, self.features, self.stride, self.shortcut, self.conv, self.norm)
        return self.act(add_shortcut(self, y, sc))


class BottleneckBlock(Block):
    """1x1 - 3x3(stride) - 1x1 (x4 channels), BN-ReLU between, + shortcut, ReLU.

    `stride_in_1x1=False` puts the stride on the 3x3 (ResNet v1.5, torchvision's default); True on
    the
    first 1x1 (the original paper, v1).  [N, H, W, C] -> [N, H/s, W/s, 4 * features].
    """

    stride_in_1x1: bool = False  # the stride on the first 1x1 (v1) instead of the 3x3 (v1.5)
    layers, expansion = 3, 4

    @shape_checked
    @nn.compact
    def __call__(self, x: Images) -> FeatureMap:
        s1, s3 = (self.stride, 1) if self.stride_in_1x1 else (1, self.stride)
        y = _bn_act(self.norm, "bn1", self.conv(self.features, 1, s1, name="conv1")(x), self.act)
        y = _bn_act(self.norm, "bn2", self.conv(self.features, 3, s3, name="conv2")(y), self.act)
        y = self.conv(self.features * self.expansion, 1, name="conv3")(y)
        y = _last_norm(self.norm, self.zero_init_last)(name="bn3")(y)
        sc = shortcut_path(
            self,
            x,
            self.features * self.expansion,
            self.stride,
            self.shortcut,
            self.conv,
            self.norm,
        )
        return self.act(add_shortcut(self, y, sc))


class PreActBasicBlock(Block):
    """BN - ReLU - conv3x3(stride) - BN - ReLU - conv3x3, + shortcut (He et al. 2016, 'identity
    mappings').

    A projection shortcut reads the pre-activated input, and nothing follows the addition.
    """

    preactivation = True

    @shape_checked
    @nn.compact
    def __call__(self, x: Images) -> FeatureMap:
        pre = _bn_act(self.norm, "bn1", x, self.act)
        y = self.conv(self.features, 3, self.stride, name="conv1")(pre)
        y = _bn_act(_last_norm(self.norm, self.zero_init_last), "bn2", y, self.act)
        y = self.conv(self.features, 3, name="conv2")(y)
        sc = shortcut_path(
            self, x, self.features, self.stride, self.shortcut, self.conv, None, project_from=pre
        )
        return add_shortcut(self, y, sc)


class PreActBottleneckBlock(Block):
    """BN-ReLU-1x1, BN-ReLU-3x3(stride), BN-ReLU-1x1 (x4), + shortcut; the v2 bottleneck."""

    stride_in_1x1: bool = False  # the stride on the first 1x1 (v1) instead of the 3x3 (v1.5)
    preactivation, layers, expansion = True, 3, 4

    @shape_checked
    @nn.compact
    def __call__(self, x: Images) -> FeatureMap:
        s1, s3 = (self.stride, 1) if self.stride_in_1x1 else (1, self.stride)
        pre = _bn_act(self.norm, "bn1", x, self.act)
        y = self.conv(self.features, 1, s1, name="conv1")(pre)
        y = self.conv(self.features, 3, s3, name="conv2")(_bn_act(self.norm, "bn2", y, self.act))
        y = _bn_act(_last_norm(self.norm, self.zero_init_last), "bn3", y, self.act)
        y = self.conv(self.features * self.expansion, 1, name="conv3")(y)
        sc = shortcut_path(
            self,
            x,
            self.features * self.expansion,
            self.stride,
            self.shortcut,
            self.conv,
            None,
            project_from=pre,
        )
        return add_shortcut(self, y, sc)


def block_class(block: str | type[Block]) -> type[Block]:
    """A block by registry name ('basic', ...), or a Block subclass as it is (a researcher's
    own)."""
    if isinstance(block, type) and issubclass(block, Block):
        return block
    if isinstance(block, str) and block in BLOCKS:
        return BLOCKS[block]
    raise ValueError(
        f"Unknown block {block!r}: use one of {sorted(BLOCKS)} or a resnet_jax.nn.blocks.Block "
        f"subclass."
    )


BLOCKS = {
    "basic": BasicBlock,
    "bottleneck": BottleneckBlock,
    "preact_basic": PreActBasicBlock,
    "preact_bottleneck": PreActBottleneckBlock,
}
