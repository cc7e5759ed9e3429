"""Per-image preprocessing for the input pipeline, in TensorFlow; random only through stateless
seeds.

Each function takes one image [H, W, C] (uint8, or float32 in [0, 255]) and, where random, a TF
stateless seed (int32 or int64 [2]): the same seed gives the same crop and flip in every run and on
every process, which is what makes `data.train_batches` resumable. `resnet_jax.data` imports this
module on first use, after hiding TensorFlow's GPUs (data/tensorflow_cpu.py); importing this module
alone does not import TensorFlow.
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
    """The CIFAR augmentation: zero-pad by `padding`, crop back to [H, W] at random, flip
    left-right half the time. [H, W, C] -> [H, W, C]."""
    tf = tensorflow()
    crop_seed, flip_seed = _split_seed(seed)
    padded = tf.pad(image, [[padding, padding], [padding, padding], [0, 0]])  # [H + 2p, W + 2p, C]
    image = tf.image.stateless_random_crop(padded, tf.shape(image), seed=crop_seed)
    return tf.image.stateless_random_flip_left_right(image, seed=flip_seed)


def inception_crop(
    image: tf.Tensor,
    seed: tf.Tensor,
    *,
    size: int,
    area_range=(0.08, 1.0),
    aspect_ratio_range=(3 / 4, 4 / 3),
) -> tf.Tensor:
    """The Inception (ImageNet train) augmentation: a random crop covering `area_range` of the
    image with an aspect ratio in `aspect_ratio_range`, resized to [size, size], flipped left-right
    half the time.

    [H, W, C] -> float32 [size, size, C] in [0, 255].
    """
    tf = tensorflow()
    crop_seed, flip_seed = _split_seed(seed)
    begin, crop_size, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(image),
        bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]),
        seed=crop_seed,
        min_object_covered=0.0,
        aspect_ratio_range=aspect_ratio_range,
        area_range=area_range,
        max_attempts=10,
        use_image_if_no_bounding_boxes=True,
    )
    crop = tf.slice(image, begin, crop_size)  # [h, w, C]
    resized = tf.image.resize(crop, [size, size], method="bilinear", antialias=True)
    return tf.image.stateless_random_flip_left_right(resized, seed=flip_seed)


def cutout(image: tf.Tensor, seed: tf.Tensor, *, size: int) -> tf.Tensor:
    """Cutout (DeVries & Taylor 2017): a `size` x `size` square centred at a uniform pixel set to
    0, clipped at the border. Applied to normalised images, as in the paper, so the square holds the
    mean. [H, W, C] -> [H, W, C]."""
    tf = tensorflow()
    shape = tf.shape(image)
    h, w = shape[0], shape[1]
    centre = tf.random.stateless_uniform(
        [2], seed, minval=0, maxval=2**30, dtype=tf.int32
    ) % tf.stack([h, w])
    top, left = tf.maximum(centre[0] - size // 2, 0), tf.maximum(centre[1] - size // 2, 0)
    bottom, right = (
        tf.minimum(centre[0] - size // 2 + size, h),
        tf.minimum(centre[1] - size // 2 + size, w),
    )
    rows, cols = tf.range(h)[:, None], tf.range(w)[None, :]  # [H, 1], [1, W]
    inside = (rows >= top) & (rows < bottom) & (cols >= left) & (cols < right)  # [H, W]
    return tf.where(inside[:, :, None], tf.zeros_like(image), image)


# TrivialAugment (Müller & Hutter 2021), with the ranges of its "wide" space (torchvision's
# TrivialAugmentWide): one op per image, drawn uniformly, at a strength drawn uniformly from
# NUM_MAGNITUDES levels in [0, 1]; signed ops take either sign. The geometric ops fill the uncovered
# pixels with black.
TRIVIAL_AUGMENT_OPS = (
    "identity",
    "shear_x",
    "shear_y",
    "translate_x",
    "translate_y",
    "rotate",
    "brightness",
    "color",
    "contrast",
    "sharpness",
    "posterize",
    "solarize",
    "autocontrast",
    "equalize",
)
NUM_MAGNITUDES = 31
MAX_SHEAR, MAX_TRANSLATE, MAX_DEGREES, MAX_ENHANCE = 0.99, 32.0, 135.0, 0.99


def trivial_augment_choice(seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """(op index into TRIVIAL_AUGMENT_OPS, signed magnitude in [-1, 1]) drawn from a stateless
    seed."""
    tf = tensorflow()
    seeds = tf.random.experimental.stateless_split(seed, num=3)
    op = tf.random.stateless_uniform(
        [], seeds[0], minval=0, maxval=len(TRIVIAL_AUGMENT_OPS), dtype=tf.int32
    )
    level = tf.random.stateless_uniform(
        [], seeds[1], minval=0, maxval=NUM_MAGNITUDES, dtype=tf.int32
    )
    sign = tf.where(tf.random.stateless_uniform([], seeds[2]) < 0.5, -1.0, 1.0)
    return op, sign * tf.cast(level, tf.float32) / (NUM_MAGNITUDES - 1)


def _blend(degenerate: tf.Tensor, image: tf.Tensor, factor) -> tf.Tensor:
    """PIL's ImageEnhance: degenerate + factor * (image - degenerate), clipped to [0, 255]."""
    tf = tensorflow()
    return tf.clip_by_value(degenerate + factor * (image - degenerate), 0.0, 255.0)


def _grey(image: tf.Tensor) -> tf.Tensor:
    """[H, W, C] -> [H, W, 1]: ITU-R 601 luma of RGB, the image itself when it has one channel."""
    tf = tensorflow()
    if image.shape[-1] != 3:
        return tf.reduce_mean(image, axis=-1, keepdims=True)
    return tf.tensordot(image, tf.constant([0.299, 0.587, 0.114]), axes=1)[..., None]


def _affine(image: tf.Tensor, transform) -> tf.Tensor:
    """Output pixel (x, y) reads input (a0 x + a1 y + a2, b0 x + b1 y + b2), nearest neighbour,
    black outside."""
    tf = tensorflow()
    h, w = tf.shape(image)[0], tf.shape(image)[1]
    matrix = tf.reshape(
        tf.concat([tf.cast(tf.stack(transform), tf.float32), tf.zeros([2])], 0), [1, 8]
    )
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=image[None],
        transforms=matrix,
        output_shape=tf.stack([h, w]),
        fill_value=0.0,
        interpolation="NEAREST",
        fill_mode="CONSTANT",
    )[0]


def _equalize(image: tf.Tensor) -> tf.Tensor:
    """PIL's ImageOps.equalize per channel: the histogram's cumulative sum as a lookup table of
    levels."""
    tf = tensorflow()

    def channel(values):  # [H, W] float levels 0..255
        levels = tf.clip_by_value(tf.cast(values, tf.int32), 0, 255)
        histogram = tf.math.bincount(tf.reshape(levels, [-1]), minlength=256, maxlength=256)
        # the count of the top level
        last = tf.gather(histogram, tf.reduce_max(tf.where(histogram > 0)[:, 0]))
        step = (tf.reduce_sum(histogram) - last) // 255
        table = tf.clip_by_value(
            (tf.cumsum(histogram) - histogram + step // 2) // tf.maximum(step, 1), 0, 255
        )
        return tf.where(step > 0, tf.cast(tf.gather(table, levels), tf.float32), values)

    return tf.stack([channel(image[..., k]) for k in range(image.shape[-1])], axis=-1)


def apply_trivial_augment_op(image: tf.Tensor, op: tf.Tensor, magnitude: tf.Tensor) -> tf.Tensor:
    """TRIVIAL_AUGMENT_OPS[op] at signed `magnitude` in [-1, 1] (unsigned ops use its size) on [H,
    W, C] in
    [0, 255], C known statically. Returns float32 [H, W, C] in [0, 255]."""
    tf = tensorflow()
    if image.shape[-1] is None:
        raise ValueError(
            "apply_trivial_augment_op needs the image's channel count in its static shape"
        )
    image = tf.cast(image, tf.float32)
    h, w = tf.cast(tf.shape(image)[0], tf.float32), tf.cast(tf.shape(image)[1], tf.float32)
    size = tf.abs(magnitude)
    angle = magnitude * MAX_DEGREES * 3.141592653589793 / 180.0
    cos, sin, cy, cx = tf.cos(angle), tf.sin(angle), (h - 1) / 2, (w - 1) / 2
    enhance = 1.0 + magnitude * MAX_ENHANCE
    shift = tf.round(size * 6)  # posterize: drop 0 .. 6 of the 8 bits
    low = tf.reduce_min(image, axis=[0, 1], keepdims=True)
    high = tf.reduce_max(image, axis=[0, 1], keepdims=True)
    branches = [
        lambda: image,
        lambda: _affine(image, [1.0, magnitude * MAX_SHEAR, 0.0, 0.0, 1.0, 0.0]),
        lambda: _affine(image, [1.0, 0.0, 0.0, magnitude * MAX_SHEAR, 1.0, 0.0]),
        lambda: _affine(image, [1.0, 0.0, magnitude * MAX_TRANSLATE, 0.0, 1.0, 0.0]),
        lambda: _affine(image, [1.0, 0.0, 0.0, 0.0, 1.0, magnitude * MAX_TRANSLATE]),
        lambda: _affine(
            image, [cos, sin, cx - cos * cx - sin * cy, -sin, cos, cy + sin * cx - cos * cy]
        ),
        lambda: _blend(tf.zeros_like(image), image, enhance),
        lambda: _blend(_grey(image), image, enhance),
        lambda: _blend(tf.reduce_mean(_grey(image)), image, enhance),
        lambda: _blend(_smooth(image), image, enhance),
        lambda: tf.floor(image / 2.0**shift) * 2.0**shift,
        lambda: tf.where(image >= 255.0 * (1.0 - size), 255.0 - image, image),
        lambda: tf.where(high > low, (image - low) * 255.0 / tf.maximum(high - low, 1e-3), image),
        lambda: _equalize(image),
    ]
    return tf.ensure_shape(tf.switch_case(op, branches), image.shape)


def _smooth(image: tf.Tensor) -> tf.Tensor:
    """PIL's SMOOTH filter (3x3, centre weight 5), the border pixels kept: the 'sharpness' op's
    degenerate."""
    tf = tensorflow()
    kernel = tf.constant([[1.0, 1.0, 1.0], [1.0, 5.0, 1.0], [1.0, 1.0, 1.0]]) / 13.0
    channels = image.shape[-1]
    kernel = tf.tile(kernel[:, :, None, None], [1, 1, channels, 1])  # [3, 3, C, 1] depthwise
    smooth = tf.nn.depthwise_conv2d(image[None], kernel, [1, 1, 1, 1], "VALID")[0]  # [H-2, W-2, C]
    return (
        tf.pad(smooth, [[1, 1], [1, 1], [0, 0]])
        + image
        - tf.pad(image[1:-1, 1:-1], [[1, 1], [1, 1], [0, 0]])
    )


RANDAUGMENT_LEVELS = (
    10  # RandAugment's magnitude M runs 0 .. 10, a tenth of each op's maximum a step
)
RANDAUGMENT_DEFAULT = (2, 9)  # N ops at magnitude M: Cubuk et al.'s ImageNet setting


def parse_auto_augment(spec: str) -> tuple[str, int, int]:
    """'none', 'trivialaugment', 'randaugment' (N=2, M=9) or 'randaugment:N:M' -> (kind, N, M);
    ValueError saying what is wrong otherwise."""
    kind, *numbers = (spec or "none").split(":")
    if kind in ("none", "trivialaugment") and not numbers:
        return kind, 0, 0
    if kind != "randaugment" or len(numbers) not in (0, 2):
        raise ValueError(
            "use 'none', 'trivialaugment', 'randaugment' or 'randaugment:N:M' (N ops, magnitude M)"
        )
    if not numbers:
        return (kind, *RANDAUGMENT_DEFAULT)
    if not all(n.isdigit() for n in numbers):
        raise ValueError("randaugment:N:M takes whole numbers, e.g. 'randaugment:2:9'")
    ops, magnitude = (int(n) for n in numbers)
    if ops < 1 or magnitude > RANDAUGMENT_LEVELS:
        raise ValueError(
            f"randaugment:N:M needs N >= 1 ops and a magnitude M in [0, {RANDAUGMENT_LEVELS}]"
        )
    return kind, ops, magnitude


def rand_augment(image: tf.Tensor, seed: tf.Tensor, *, ops: int, magnitude: int) -> tf.Tensor:
    """RandAugment (Cubuk et al. 2020): `ops` ops drawn uniformly, with replacement, from
    TRIVIAL_AUGMENT_OPS (identity included), each at magnitude / 10 of its largest strength and a
    random sign. [H, W, C] in [0, 255] -> float32 [H, W, C] in [0, 255]."""
    tf = tensorflow()
    seeds = tf.random.experimental.stateless_split(seed, num=2 * ops)
    image = tf.cast(image, tf.float32)
    for i in range(ops):
        op = tf.random.stateless_uniform(
            [], seeds[2 * i], minval=0, maxval=len(TRIVIAL_AUGMENT_OPS), dtype=tf.int32
        )
        sign = tf.where(tf.random.stateless_uniform([], seeds[2 * i + 1]) < 0.5, -1.0, 1.0)
        image = apply_trivial_augment_op(image, op, sign * magnitude / RANDAUGMENT_LEVELS)
    return image


def trivial_augment(image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """One TrivialAugment op at a random strength. [H, W, C] in [0, 255] -> float32 [H, W, C] in
    [0, 255]."""
    op, magnitude = trivial_augment_choice(seed)
    return apply_trivial_augment_op(image, op, magnitude)


def centre_crop(image: tf.Tensor, *, size: int) -> tf.Tensor:
    """The ImageNet evaluation view: the central square of CENTRE_CROP_FRACTION of the shorter
    side, resized to
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
