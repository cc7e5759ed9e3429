"""Mixup and CutMix: a batch mixed with a permutation of itself, and the labels mixed in the same
proportion.

    # one of the two, chosen at random per batch
    mixed = mix(key, images, mixup_alpha=0.2, cutmix_alpha=1.0)
    targets = mixed_targets(labels, mixed, num_classes)           # lam * y + (1 - lam) * y[partner]

Mixup (Zhang et al. 2018) blends whole images: lam * x + (1 - lam) * x[partner], lam ~ Beta(alpha,
alpha). CutMix (Yun et al. 2019) pastes a box of the partner covering about 1 - lam of the image;
lam is then the exact fraction of pixels left from the image itself. Pure functions of the key, for
the jitted train step.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


class Mixed(NamedTuple):
    images: jax.Array  # [N, H, W, C], the mixed batch
    partner: jax.Array  # int32 [N]: image i was mixed with image partner[i]
    lam: jax.Array  # float32 []: the share of each image's own label


def mixup(key: jax.Array, images: jax.Array, alpha: float) -> Mixed:
    """lam * images + (1 - lam) * images[partner], one lam ~ Beta(alpha, alpha) for the batch."""
    lam_key, order_key = jax.random.split(key)
    lam = jax.random.beta(lam_key, alpha, alpha).astype(jnp.float32)
    partner = jax.random.permutation(order_key, images.shape[0])
    mixed = lam * images + (1.0 - lam) * images[partner]
    return Mixed(mixed.astype(images.dtype), partner, lam)


def cutmix_box(key: jax.Array, lam: jax.Array, height: int, width: int) -> jax.Array:
    """bool [H, W], True inside a box of sides sqrt(1 - lam) * (H, W) centred uniformly, clipped to
    the image."""
    cy_key, cx_key = jax.random.split(key)
    ratio = jnp.sqrt(1.0 - lam)
    cut_h, cut_w = jnp.floor(height * ratio), jnp.floor(width * ratio)
    cy = jax.random.uniform(cy_key, (), maxval=height)
    cx = jax.random.uniform(cx_key, (), maxval=width)
    top, bottom = jnp.clip(cy - cut_h / 2, 0, height), jnp.clip(cy + cut_h / 2, 0, height)
    left, right = jnp.clip(cx - cut_w / 2, 0, width), jnp.clip(cx + cut_w / 2, 0, width)
    rows = jnp.arange(height, dtype=jnp.float32)[:, None]  # [H, 1]
    cols = jnp.arange(width, dtype=jnp.float32)[None, :]  # [1, W]
    return (
        (rows >= jnp.floor(top))
        & (rows < jnp.floor(bottom))
        & (cols >= jnp.floor(left))
        & (cols < jnp.floor(right))
    )


def cutmix(key: jax.Array, images: jax.Array, alpha: float) -> Mixed:
    """images with a box of images[partner] pasted in; lam = the fraction of pixels outside the
    box."""
    lam_key, order_key, box_key = jax.random.split(key, 3)
    n, h, w, c = images.shape
    lam = jax.random.beta(lam_key, alpha, alpha).astype(jnp.float32)
    partner = jax.random.permutation(order_key, n)
    box = cutmix_box(box_key, lam, h, w)
    mixed = jnp.where(box[None, :, :, None], images[partner], images)  # [N, H, W, C]
    return Mixed(mixed, partner, 1.0 - jnp.mean(box.astype(jnp.float32)))


def mix(key: jax.Array, images: jax.Array, *, mixup_alpha: float, cutmix_alpha: float) -> Mixed:
    """Mixup, CutMix, or (both alphas > 0) one of them with probability 1/2 each, per batch (timm's
    switch)."""
    if mixup_alpha > 0 and cutmix_alpha > 0:
        choice_key, key = jax.random.split(key)
        return jax.lax.cond(
            jax.random.bernoulli(choice_key),
            lambda: cutmix(key, images, cutmix_alpha),
            lambda: mixup(key, images, mixup_alpha),
        )
    if cutmix_alpha > 0:
        return cutmix(key, images, cutmix_alpha)
    return mixup(key, images, mixup_alpha)


def mixed_targets(labels: jax.Array, mixed: Mixed, num_classes: int) -> jax.Array:
    """float32 [N, num_classes]: lam * one_hot(labels) + (1 - lam) * one_hot(labels[partner])."""
    own = jax.nn.one_hot(labels, num_classes)
    return mixed.lam * own + (1.0 - mixed.lam) * own[mixed.partner]
