"""Per-layer trace of any model: shapes, padding, parameters, MACs, receptive field and jump.

The chapter's habit of printing the shape after every layer, as a tool. `trace(model, (1, 224, 224,
3))` runs the model's init abstractly (jax.eval_shape: nothing is computed) and records each Conv2D,
pool, BatchNorm and Dense call. Receptive fields follow the main path; a shortcut projection is
measured from its block's input and does not advance the path. `empirical_receptive_field` measures
the same thing from gradients.

MACs count the whole kernel window at every output pixel, padding taps included (what a dense kernel
computes); FLOPs are 2 x MACs. XLA's `cost_analysis()` counts only the taps that fall on the image,
and adds the BatchNorm, ReLU and shortcut arithmetic, so it reports less for padded networks:
ResNet-20's forward pass is 40.55 M MACs here (81.1 M FLOPs) against XLA's 74.8 M FLOPs; a 3x3
convolution with padding 1 on 32x32 has 94 x 94 valid taps per channel pair instead of 9 x 32 x 32
(-4.1%), on 8x8 22 x 22 instead of 576 (-16%).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from resnet_jax.nn import blocks
from resnet_jax.nn.conv import Conv2D, explicit_padding, pair
from resnet_jax.nn.norm import BatchNorm
from resnet_jax.nn.pool import GlobalAvgPool, MaxPool2D
from resnet_jax.nn.resnet import parse_block_name
from resnet_jax.nn.shapes import ShapeError, output_size, receptive_field_step

BLOCK_TYPES = (blocks.Block,)


class LayerRow(NamedTuple):
    name: str  # module path, e.g. 'stage1_block0/conv1'
    kind: str  # 'conv' | 'max_pool' | 'batch_norm' | 'global_pool' | 'dense'
    in_shape: tuple  # [N, H, W, C] (or [N, C] into the dense layer)
    out_shape: tuple
    kernel: tuple | None  # (KH, KW) for convs and pools
    stride: tuple | None  # (SH, SW)
    padding: tuple | None  # ((low_h, high_h), (low_w, high_w)) actually applied
    dilation: tuple | None
    params: int  # trainable parameters of this layer
    macs: int  # multiply-accumulates per image
    receptive_field: tuple  # (RF_H, RF_W) in input pixels, of one output pixel
    jump: tuple  # (J_H, J_W): input pixels between neighbouring output pixels (effective stride)


def _spatial_row(name, kind, module, x, y, state, params, macs, kernel, stride, padding, dilation):
    """Check y's spatial size against output_size, advance (rf, jump) and build the row."""
    n, h, w, c = x.shape
    pads = explicit_padding(padding, (h, w), kernel, stride, dilation)
    expected = tuple(
        output_size(s, k, st, p, d, layer=name)
        for s, k, st, p, d in zip((h, w), kernel, stride, pads, dilation)
    )
    if tuple(y.shape[1:3]) != expected:
        raise ShapeError(
            f"Layer '{name}': XLA produced spatial size {tuple(y.shape[1:3])} but output_size "
            f"gives {expected}; the layer's padding bookkeeping is wrong."
        )
    rf_jump = [
        receptive_field_step(r, j, k, s, d)
        for r, j, k, s, d in zip(state[0], state[1], kernel, stride, dilation)
    ]
    rf, jump = tuple(r for r, _ in rf_jump), tuple(j for _, j in rf_jump)
    row = LayerRow(
        name,
        kind,
        tuple(x.shape),
        tuple(y.shape),
        kernel,
        stride,
        tuple(pads),
        dilation,
        params,
        macs,
        rf,
        jump,
    )
    return row, (rf, jump)


def trace(model: nn.Module, input_shape: Sequence[int], **call_kwargs) -> list[LayerRow]:
    """Rows, in call order, for `model.init(key, zeros(input_shape), **call_kwargs)`.

    Emits a warning (see `feature_map_warnings`) when a map collapses to 1x1 early or never shrinks.
    """
    rows: list[LayerRow] = []
    # (receptive field, jump) of the main path, as a one-element stack cell
    state = [((1, 1), (1, 1))]
    block_inputs: list[tuple] = []

    def interceptor(next_fun, args, kwargs, context):
        module, x = context.module, args[0] if args else None
        if context.method_name != "__call__" or x is None:
            return next_fun(*args, **kwargs)
        if isinstance(module, BLOCK_TYPES):
            block_inputs.append(state[0])
            try:
                return next_fun(*args, **kwargs)
            finally:
                block_inputs.pop()
        y = next_fun(*args, **kwargs)
        name = "/".join(module.path)
        if isinstance(module, Conv2D):
            kh, kw = pair(module.kernel_size)
            c, k = x.shape[-1], module.features
            params = kh * kw * (c // module.groups) * k + (k if module.use_bias else 0)
            macs = y.shape[1] * y.shape[2] * k * kh * kw * (c // module.groups)
            is_shortcut = module.name == "shortcut_conv" and block_inputs
            start = block_inputs[-1] if is_shortcut else state[0]
            row, new_state = _spatial_row(
                name,
                "conv",
                module,
                x,
                y,
                start,
                params,
                macs,
                (kh, kw),
                pair(module.stride),
                module.padding,
                pair(module.dilation),
            )
            rows.append(row)
            if not is_shortcut:
                state[0] = new_state
        elif isinstance(module, MaxPool2D):
            row, state[0] = _spatial_row(
                name,
                "max_pool",
                module,
                x,
                y,
                state[0],
                0,
                0,
                pair(module.window),
                pair(module.stride),
                module.padding,
                (1, 1),
            )
            rows.append(row)
        elif isinstance(module, (BatchNorm, nn.BatchNorm)):
            rows.append(
                LayerRow(
                    name,
                    "batch_norm",
                    tuple(x.shape),
                    tuple(y.shape),
                    None,
                    None,
                    None,
                    None,
                    2 * x.shape[-1],
                    0,
                    *state[0],
                )
            )
        elif isinstance(module, GlobalAvgPool):
            rows.append(
                LayerRow(
                    name,
                    "global_pool",
                    tuple(x.shape),
                    tuple(y.shape),
                    None,
                    None,
                    None,
                    None,
                    0,
                    0,
                    *state[0],
                )
            )
        elif isinstance(module, nn.Dense):
            fan_in = x.shape[-1]
            rows.append(
                LayerRow(
                    name,
                    "dense",
                    tuple(x.shape),
                    tuple(y.shape),
                    None,
                    None,
                    None,
                    None,
                    fan_in * module.features + (module.features if module.use_bias else 0),
                    fan_in * module.features,
                    *state[0],
                )
            )
        return y

    with nn.intercept_methods(interceptor):
        jax.eval_shape(
            lambda: model.init(
                jax.random.key(0), jnp.zeros(input_shape, jnp.float32), **call_kwargs
            )
        )
    for message in feature_map_warnings(rows, tuple(input_shape[1:3])):
        warnings.warn(message, stacklevel=2)
    return rows


def _stage(name: str) -> int | None:
    block = parse_block_name(name.split("/")[0])
    return block[0] if block else None


def feature_map_warnings(rows: Sequence[LayerRow], input_hw: tuple[int, int]) -> list[str]:
    """Messages for a map that is 1x1 before the last stage, or that never shrinks before global
    pooling."""
    messages = []
    stages = [s for s in (_stage(r.name) for r in rows) if s is not None]
    last_stage = max(stages) if stages else None
    for row in rows:
        if row.kind in ("conv", "max_pool") and row.out_shape[1:3] == (1, 1):
            stage = _stage(row.name)
            if last_stage is not None and (stage is None or stage < last_stage):
                messages.append(
                    f"Layer '{row.name}' reduces the feature map to 1x1 before the last stage "
                    f"(stage {last_stage}); later 3x3 convs see only padding. Use a larger "
                    f"input or fewer stride-2 layers."
                )
                break
    for row in rows:
        if row.kind == "global_pool" and tuple(row.in_shape[1:3]) == tuple(input_hw):
            messages.append(
                f"The feature map never shrinks before global pooling ('{row.name}' sees "
                f"{row.in_shape[1]}x{row.in_shape[2]}, the input size): no layer downsamples."
            )
    return messages


def totals(rows: Sequence[LayerRow]) -> tuple[int, int]:
    """(parameters, MACs per image) summed over the rows."""
    return sum(r.params for r in rows), sum(r.macs for r in rows)


def empirical_receptive_field(
    fn: Callable[[jax.Array], jax.Array],
    input_shape: Sequence[int],
    samples: int = 8,
    seed: int = 0,
) -> tuple[int, int]:
    """(RF_H, RF_W) of the centre output pixel, from where its gradient w.r.t. the input is
    non-zero.

    `fn` maps [1, H, W, C] -> [1, H', W', K]; choose H, W larger than the receptive field so that it
    is not clipped by the image border. Max-pooling and ReLU route gradient to only some pixels of a
    window, so one input can under-measure; the support is the union over `samples` random inputs.
    """
    xs = jax.random.normal(jax.random.key(seed), (samples, *input_shape), jnp.float32)
    out_h, out_w = jax.eval_shape(fn, xs[0]).shape[1:3]
    centre = jax.grad(lambda v: fn(v)[0, out_h // 2, out_w // 2, :].sum())
    touched = np.zeros(tuple(input_shape[1:3]), bool)  # [H, W]
    for x in xs:
        touched |= np.abs(np.asarray(centre(x))).sum(axis=(0, 3)) > 0
    rows_hit, cols_hit = np.nonzero(touched.any(axis=1))[0], np.nonzero(touched.any(axis=0))[0]
    return int(rows_hit[-1] - rows_hit[0] + 1), int(cols_hit[-1] - cols_hit[0] + 1)
