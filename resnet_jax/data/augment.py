"""Per-image preprocessing for the input pipeline, in TensorFlow; random only through stateless seeds.

Each function takes one image [H, W, C] (uint8, or float32 in [0, 255]) and, where random, a TF stateless seed
(int32 or int64 [2]): the same seed gives the same crop and flip in every run and on every process, which is
what makes `data.train_batches` resumable. `resnet_jax.data` imports this module on first use, after hiding
TensorFlow's GPUs
(data/tensorflow_cpu.py); importing this module alone does not import TensorFlow.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from resnet_jax.data.tensorflow_cpu import tensorflow

if TYPE_CHECKING:
    import tensorflow as tf

CENTRE_CROP_FRACTION = 0.875  # Of the shorter side, as in the ResNet and Inception evaluations.


def _split_seed(seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    tf = tensorflow()
    seeds = tf.random.experimental.stateless_split(seed, num=2)
    return seeds[0], seeds[1]


def pad_crop_flip(image: tf.Tensor, seed: tf.Tensor, *, padding: int = 4) -> tf.Tensor:
    """The CIFAR augmentation: zero-pad by `padding`, crop back to [H, W] at random, flip left-right half the
    time. [H, W, C] -> [H, W, C]."""
    tf = tensorflow()
    crop_seed, flip_seed = _split_seed(seed)
    padded = tf.pad(image, [[padding, padding], [padding, padding], [0, 0]])  # [H + 2p, W + 2p, C]
    image = tf.image.stateless_random_crop(padded, tf.shape(image), seed=crop_seed)
    return tf.image.stateless_random_flip_left_right(image, seed=flip_seed)


def inception_crop(image: tf.Tensor, seed: tf.Tensor, *, size: int, area_range=(0.08, 1.0),
                   aspect_ratio_range=(3 / 4, 4 / 3)) -> tf.Tensor:
    """The Inception (ImageNet train) augmentation: a random crop covering `area_range` of the image with an
    aspect ratio in `aspect_ratio_range`, resized to [size, size], flipped left-right half the time.

    [H, W, C] -> float32 [size, size, C] in [0, 255].
    """
    tf = tensorflow()
    crop_seed, flip_seed = _split_seed(seed)
    begin, crop_size, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(image), bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]), seed=crop_seed,
        min_object_covered=0.0, aspect_ratio_range=aspect_ratio_range, area_range=area_range,
        max_attempts=10, use_image_if_no_bounding_boxes=True)
    crop = tf.slice(image, begin, crop_size)  # [h, w, C]
    resized = tf.image.resize(crop, [size, size], method="bilinear", antialias=True)
    return tf.image.stateless_random_flip_left_right(resized, seed=flip_seed)


def cutout(image: tf.Tensor, seed: tf.Tensor, *, size: int) -> tf.Tensor:
    """Cutout (DeVries & Taylor 2017): a `size` x `size` square centred at a uniform pixel set to 0, clipped at
    the border. Applied to normalised images, as in the paper, so the square holds the mean. [H, W, C] -> [H, W, C]."""
    tf = tensorflow()
    shape = tf.shape(image)
    h, w = shape[0], shape[1]
    centre = tf.random.stateless_uniform([2], seed, minval=0, maxval=2**30, dtype=tf.int32) % tf.stack([h, w])
    top, left = tf.maximum(centre[0] - size // 2, 0), tf.maximum(centre[1] - size // 2, 0)
    bottom, right = tf.minimum(centre[0] - size // 2 + size, h), tf.minimum(centre[1] - size // 2 + size, w)
    rows, cols = tf.range(h)[:, None], tf.range(w)[None, :]  # [H, 1], [1, W]
    inside = (rows >= top) & (rows < bottom) & (cols >= left) & (cols < right)  # [H, W]
    return tf.where(inside[:, :, None], tf.zeros_like(image), image)


def centre_crop(image: tf.Tensor, *, size: int) -> tf.Tensor:
    """The ImageNet evaluation view: the central square of CENTRE_CROP_FRACTION of the shorter side, resized to
    [size, size]. [H, W, C] -> float32 [size, size, C] in [0, 255]."""
    tf = tensorflow()
    shape = tf.shape(image)
    h, w = shape[0], shape[1]
    side = tf.cast(CENTRE_CROP_FRACTION * tf.cast(tf.minimum(h, w), tf.float32), tf.int32)
    crop = tf.image.crop_to_bounding_box(image, (h - side) // 2, (w - side) // 2, side, side)
    return tf.image.resize(crop, [size, size], method="bilinear", antialias=True)


def normalise(image: tf.Tensor, mean, std) -> tf.Tensor:
    """Scales to [0, 1], then per channel (x - mean) / std. [H, W, C] -> float32 [H, W, C]."""
    tf = tensorflow()
    image = tf.cast(image, tf.float32) / 255.0
    return (image - tf.constant(mean, tf.float32)) / tf.constant(std, tf.float32)
