"""Starting from weights one already has: laying them over a fresh state, and frozen parts of the
network.

    variables = overlay(fresh_variables, loaded)  # loaded may lack the head (a new classifier)
    tx = freeze(tx, ("stem", "stage1"))                  # zero updates for those parts' parameters
    batch_stats = keep_frozen(old_stats, new_stats, ("stem", "stage1"))

A part is a top-level module of the ResNet (resnet.py's names): 'stem' (stem_conv, stem_bn),
'stage1' ...
'stageS' (the blocks stageI_blockJ), 'final_bn' (pre-activation nets) and 'head' (the classifier).
The model itself makes frozen parts' BatchNorms use their running statistics
(`ResNet(frozen_norm=...)`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import optax
from flax import traverse_util

from resnet_jax.nn.blocks import block_class
from resnet_jax.nn.resnet import ResNet, parse_block_name


def part_of(module: str) -> str:
    """The part a top-level module belongs to: 'stem_bn' -> 'stem', 'stage2_block0' -> 'stage2',
    'head' -> 'head'."""
    if module.startswith("stem_"):
        return "stem"
    block = parse_block_name(module)
    return f"stage{block[0]}" if block else module


def parts(model: ResNet) -> list[str]:
    """The parts of `model`, in order: 'stem', 'stage1' ... 'stageS', ['final_bn',] 'head'."""
    final = ["final_bn"] if block_class(model.block).preactivation else []
    return ["stem", *(f"stage{i}" for i in range(1, len(model.stage_sizes) + 1)), *final, "head"]


def frozen_mask(tree: Any, frozen: Sequence[str]) -> Any:
    """A pytree of bools like `tree` (params or batch_stats, keyed by module): True where the leaf
    is frozen."""
    flat = traverse_util.flatten_dict(dict(tree))
    return traverse_util.unflatten_dict({path: part_of(path[0]) in frozen for path in flat})


def freeze(tx: optax.GradientTransformation, frozen: Sequence[str]) -> optax.GradientTransformation:
    """`tx` for the trained parameters, zero updates (and no optimizer state) for those of the
    frozen parts."""
    if not frozen:
        return tx

    def labels(params):
        return jax.tree.map(lambda f: "frozen" if f else "trained", frozen_mask(params, frozen))

    return optax.multi_transform({"trained": tx, "frozen": optax.set_to_zero()}, labels)


def keep_frozen(old: Any, new: Any, frozen: Sequence[str]) -> Any:
    """`new` (BatchNorm statistics after a step) with the frozen parts' leaves from `old`."""
    if not frozen:
        return new
    return jax.tree.map(lambda f, a, b: a if f else b, frozen_mask(old, frozen), old, new)


def overlay(fresh: Any, loaded: Any) -> Any:
    """`fresh` with every leaf that `loaded` has replaced by loaded's (same paths, shapes and
    dtypes checked)."""
    fresh_flat, loaded_flat = (
        traverse_util.flatten_dict(dict(fresh)),
        traverse_util.flatten_dict(dict(loaded)),
    )
    for path, value in loaded_flat.items():
        if path not in fresh_flat or fresh_flat[path].shape != value.shape:
            raise ValueError(
                f"weights for {'/'.join(path)} {getattr(value, 'shape', '?')} do not fit the model "
                f"({getattr(fresh_flat.get(path), 'shape', 'absent')})"
            )
    return traverse_util.unflatten_dict(
        {
            path: loaded_flat.get(path, value).astype(value.dtype)
            for path, value in fresh_flat.items()
        }
    )
