"""The ResNet family as one Linen module: a stem, stages of blocks, global average pooling, a
classifier.

ImageNet ResNets and the CIFAR (6n+2) ResNets differ only in configuration (see models.py for both):

    stem conv (k, s) [BN-ReLU] [max-pool 3x3/2] -> stage 1 .. stage S -> [BN-ReLU if pre-act] ->
    pool -> dense

Parameters are named like torchvision's where they can be (`stem_conv`, `stem_bn`,
`stage1_block0/conv1`, `.../shortcut_conv`, `head`), so ports of weights map names one to one.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from resnet_jax.nn.arrays import Images, Logits, shape_checked
from resnet_jax.nn.blocks import SHORTCUTS, Block, block_class
from resnet_jax.nn.conv import Conv2D, ConvBackend, Padding
from resnet_jax.nn.drop_path import DropPath, drop_path_rates
from resnet_jax.nn.norm import BatchNorm
from resnet_jax.nn.pool import GlobalAvgPool, MaxPool2D
from resnet_jax.nn.shapes import ShapeError

# The paddings a whole model may use, passed as they are to every conv and pool (conv2d takes any
# case):
# 'symmetric' pads by (k-1)//2 on both sides (PyTorch, the CIFAR reference, torchvision weights);
# 'same' is
# XLA's, asymmetric on stride-2 layers with even inputs. shapes.resolve_padding defines both.
PADDING_MODES = ("symmetric", "same")


class ResNet(nn.Module):
    """A ResNet. Call as `model.apply(variables, x, train=False)`; x is [N, H, W, C], logits [N,
    num_classes]."""

    stage_sizes: Sequence[int]  # blocks per stage, e.g. (3, 4, 6, 3) for ResNet-50
    block: str | type[Block] = (
        "basic"  # 'basic' | 'bottleneck' | 'preact_basic' | 'preact_bottleneck' | a Block
    )
    # block width per stage (bottleneck outputs 4x this)
    widths: Sequence[int] = (
        64,
        128,
        256,
        512,
    )
    stage_strides: Sequence[int] = (1, 2, 2, 2)  # stride of each stage's first block
    num_classes: int = 1000
    shortcut: str = "B"  # 'A' | 'B' | 'C' | 'none' (plain network), see blocks.py
    width_multiplier: float = 1.0
    stem_features: int | None = None  # default: widths[0]
    stem_kernel: int = 7
    stem_stride: int = 2
    stem_padding: Padding | None = None  # default: the model's padding mode
    stem_pool: bool = True  # 3x3 stride-2 max-pool after the stem
    padding: str = "symmetric"  # 'symmetric' | 'same', for every conv and pool
    stride_in_1x1: bool = False  # bottleneck stride on the first 1x1 (v1) instead of the 3x3 (v1.5)
    zero_init_last: bool = False  # zero scale of each block's last BN
    drop_path_rate: float = (
        0.0  # stochastic depth of the last block; linear in depth before it (drop_path.py)
    )
    # Parts ('stem', 'stage1', ..., 'final_bn') whose BatchNorms normalise by their running
    # statistics in training too, and leave them as they are (frozen parts when fine-tuning, like
    # torchvision's FrozenBatchNorm2d).
    frozen_norm: Sequence[str] = ()
    bn_momentum: float = 0.9  # running average decay (PyTorch's momentum=0.1)
    bn_epsilon: float = 1e-5
    axis_name: str | None = None  # pmap axis for cross-replica BatchNorm statistics
    dtype: Any = jnp.float32  # computation dtype; params and BN statistics stay float32
    conv_backend: ConvBackend | None = (
        None  # who computes the convolutions (nn/conv.py); None is XLA's
    )

    def __post_init__(self):
        super().__post_init__()
        validate(self)

    @shape_checked
    @nn.compact
    def __call__(self, x: Images, train: bool = False) -> Logits:
        if x.ndim != 4:
            raise ShapeError(
                f"ResNet expects images [N, H, W, C], got shape {tuple(x.shape)}; "
                f"add a channel axis to grayscale images (x[..., None])."
            )
        pad = self.padding
        conv = functools.partial(Conv2D, padding=pad, dtype=self.dtype, backend=self.conv_backend)
        norm = functools.partial(
            BatchNorm,
            use_running_average=not train,
            momentum=self.bn_momentum,
            epsilon=self.bn_epsilon,
            dtype=self.dtype,
            axis_name=self.axis_name,
        )
        block_cls = block_class(self.block)
        preact = block_cls.preactivation

        def norm_of(part: str) -> Any:
            return (
                functools.partial(norm, use_running_average=True)
                if part in self.frozen_norm
                else norm
            )

        widths = [max(1, int(round(w * self.width_multiplier))) for w in self.widths]
        stem_features = self.stem_features or widths[0]
        stem_padding = pad if self.stem_padding is None else self.stem_padding

        x = conv(
            stem_features,
            self.stem_kernel,
            self.stem_stride,
            padding=stem_padding,
            name="stem_conv",
        )(x)
        if not preact or self.stem_pool:
            x = norm_of("stem")(name="stem_bn")(x, relu=True)
        if self.stem_pool:
            x = MaxPool2D(3, 2, padding=pad, name="stem_pool")(x)
        rates = iter(drop_path_rates(self.drop_path_rate, sum(self.stage_sizes)))
        for i, (size, width, stride) in enumerate(
            zip(self.stage_sizes, widths, self.stage_strides), start=1
        ):
            for j in range(size):
                extra = (
                    {"stride_in_1x1": self.stride_in_1x1}
                    if hasattr(block_cls, "stride_in_1x1")
                    else {}
                )
                rate = next(rates)
                drop = (
                    functools.partial(DropPath, rate=rate, deterministic=not train)
                    if rate > 0
                    else None
                )
                x = block_cls(
                    width,
                    stride if j == 0 else 1,
                    self.shortcut,
                    conv,
                    norm_of(f"stage{i}"),
                    zero_init_last=self.zero_init_last,
                    drop_path=drop,
                    name=block_name(i, j),
                    **extra,
                )(x)
        if preact:
            x = norm_of("final_bn")(name="final_bn")(x, relu=True)
        x = GlobalAvgPool(name="pool")(x)  # [N, H, W, C] -> [N, C]
        x = nn.Dense(self.num_classes, dtype=self.dtype, name="head")(x)
        return x.astype(jnp.float32)


def block_name(stage: int, index: int) -> str:
    """The module name of block `index` (from 0) of stage `stage` (from 1): 'stage2_block0'
    (torchvision's
    'layer2.0'); interop and the trace read names through here."""
    return f"stage{stage}_block{index}"


def parse_block_name(name: str) -> tuple[int, int] | None:
    """(stage, index) of a block_name, or None for any other module name."""
    match = re.fullmatch(r"stage(\d+)_block(\d+)", name)
    return (int(match[1]), int(match[2])) if match else None


def validate(model: ResNet) -> None:
    """Raise ValueError, naming the field, for a configuration that cannot build."""
    n = len(model.stage_sizes)
    if n == 0 or any(not isinstance(s, int) or s < 1 for s in model.stage_sizes):
        raise ValueError(
            f"stage_sizes must be positive ints, one per stage; got {model.stage_sizes!r}."
        )
    if len(model.widths) != n or len(model.stage_strides) != n:
        raise ValueError(
            f"stage_sizes, widths and stage_strides need one entry per stage; got {n}, "
            f"{len(model.widths)} and {len(model.stage_strides)}."
        )
    block_class(model.block)  # raises for an unknown name
    if model.shortcut not in SHORTCUTS:
        raise ValueError(
            f"Unknown shortcut {model.shortcut!r}: use one of {SHORTCUTS} "
            f"('none' is the plain network)."
        )
    if model.padding not in PADDING_MODES:
        raise ValueError(
            f"Unknown padding mode {model.padding!r}: use one of {sorted(PADDING_MODES)}."
        )
    if model.num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {model.num_classes}.")
    if not 0 <= model.drop_path_rate < 1:
        raise ValueError(f"drop_path_rate must lie in [0, 1), got {model.drop_path_rate}.")
    if model.drop_path_rate > 0 and model.shortcut == "none":
        raise ValueError(
            "drop_path_rate > 0 drops residual branches; a plain network (shortcut='none') has "
            "none."
        )
    if model.width_multiplier <= 0:
        raise ValueError(f"width_multiplier must be > 0, got {model.width_multiplier}.")
    for name in ("stem_kernel", "stem_stride"):
        if getattr(model, name) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(model, name)}.")
    if any(s < 1 for s in model.stage_strides):
        raise ValueError(f"stage_strides must be >= 1, got {model.stage_strides!r}.")
