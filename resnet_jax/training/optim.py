"""Optimizers and learning-rate schedules, built from plain arguments with optax.

    lr_fn = learning_rate_schedule("step", lr=0.1, total_steps=64_000, boundaries=(32_000, 48_000),
                                   scales=(0.1, 0.1))
    tx = make_optimizer("sgd", lr_fn, momentum=0.9, weight_decay=1e-4)
    # what the train step takes: the update, and its schedule for the logs
    optimizer = Optimizer(tx, lr_fn)

Weight decay on SGD is the L2 penalty of the papers (added to the gradient before momentum, as
PyTorch does); AdamW's is decoupled; LARS applies it inside the trust ratio. `exclude_bn_and_bias`
keeps it (and LARS's trust ratio) off BatchNorm scales/offsets and biases: every parameter with
fewer than two dimensions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

OPTIMIZERS = ("sgd", "adamw", "lars")
SCHEDULES = ("constant", "cosine", "step", "onecycle")


class Optimizer(NamedTuple):
    """An optax transformation and the learning-rate schedule it was built with (read for the logs
    only)."""

    tx: optax.GradientTransformation
    learning_rate: optax.Schedule


def learning_rate_schedule(
    name: str,
    *,
    lr: float,
    total_steps: int,
    warmup_steps: int = 0,
    boundaries: Sequence[int] = (),
    scales: Sequence[float] = (),
) -> optax.Schedule:
    """The learning rate at each step (0-based count of updates done).

    'constant' lr; 'cosine' to 0 at total_steps; 'step' multiplies lr by scales[i] at boundaries[i]
    (absolute steps); 'onecycle' rises for warmup_steps (or 30%) then anneals (Smith 2018). A linear
    warmup
    from 0 over
    warmup_steps precedes 'constant', 'cosine' and 'step'.
    """
    if name == "onecycle":
        pct_start = warmup_steps / total_steps if warmup_steps else 0.3
        return optax.cosine_onecycle_schedule(total_steps, lr, pct_start=pct_start)
    if name == "cosine":
        return optax.warmup_cosine_decay_schedule(
            0.0, lr, warmup_steps, max(total_steps, warmup_steps + 1)
        )
    if name == "constant":
        base = optax.constant_schedule(lr)
    elif name == "step":
        base = optax.piecewise_constant_schedule(lr, dict(zip(boundaries, scales)))
    else:
        raise ValueError(f"Unknown schedule {name!r}: use one of {SCHEDULES}.")
    if not warmup_steps:
        return base
    return lambda step: base(step) * jnp.minimum(1.0, step / warmup_steps)


def decay_mask(params: Any) -> Any:
    """True for parameters that weight decay applies to: conv and dense kernels (ndim >= 2)."""
    return jax.tree.map(lambda p: p.ndim > 1, params)


def make_optimizer(
    name: str,
    learning_rate: optax.ScalarOrSchedule,
    *,
    momentum: float = 0.9,
    nesterov: bool = False,
    beta2: float = 0.999,
    weight_decay: float = 0.0,
    exclude_bn_and_bias: bool = True,
    grad_clip: float = 0.0,
) -> optax.GradientTransformation:
    """SGD (momentum, optional Nesterov), AdamW (b1=momentum, b2=beta2) or LARS, with optional
    clipping.

    grad_clip > 0 clips the global gradient norm first (before weight decay).
    """
    mask = decay_mask if exclude_bn_and_bias else None
    if name == "sgd":
        tx = optax.chain(
            optax.add_decayed_weights(weight_decay, mask) if weight_decay else optax.identity(),
            optax.sgd(learning_rate, momentum=momentum or None, nesterov=nesterov),
        )
    elif name == "adamw":
        tx = optax.adamw(
            learning_rate,
            b1=momentum,
            b2=beta2,
            weight_decay=weight_decay,
            mask=mask,
            nesterov=nesterov,
        )
    elif name == "lars":
        lars_mask = mask if mask is not None else True
        tx = optax.lars(
            learning_rate,
            weight_decay=weight_decay,
            weight_decay_mask=lars_mask,
            trust_ratio_mask=lars_mask,
            momentum=momentum,
            nesterov=nesterov,
        )
    else:
        raise ValueError(f"Unknown optimizer {name!r}: use one of {OPTIMIZERS}.")
    if grad_clip > 0:
        tx = optax.chain(optax.clip_by_global_norm(grad_clip), tx)
    return tx


def ema_update(average: Any, new: Any, decay: float) -> Any:
    """Exponential moving average of a pytree: decay * average + (1 - decay) * new."""
    return jax.tree.map(lambda a, x: decay * a + (1.0 - decay) * x, average, new)
