"""Cutout and TrivialAugment: what each op computes on small images, the same result for the same
seed, and the pipeline's batches with them on."""

import numpy as np
import pytest

from resnet_jax import data
from resnet_jax.data import augment
from resnet_jax.data.tensorflow_cpu import tensorflow

tf = tensorflow()


def seed(i):
    return tf.constant([i, 7], tf.int64)


def test_cutout_zeroes_one_clipped_square_of_the_given_side():
    image = tf.ones([8, 8, 3])
    shapes = set()
    for i in range(20):
        out = augment.cutout(image, seed(i), size=4).numpy()
        zero = out[..., 0] == 0
        assert np.array_equal(zero[..., None].repeat(3, -1), out == 0)  # every channel alike
        rows, cols = np.nonzero(zero)
        # one rectangle
        assert (
            zero[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1].all()
            and zero.sum() == zero[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1].size
        )
        h, w = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
        # clipped only at a border
        assert h <= 4 and w <= 4 and (h == 4 or rows.min() == 0 or rows.max() == 7)
        shapes.add((rows.min(), cols.min()))
        # same seed, same square
        np.testing.assert_array_equal(out, augment.cutout(image, seed(i), size=4).numpy())
    assert len(shapes) > 5  # the centre is random


def ramp(channels=3):
    """[8, 8, C] float32 levels 0 ... 252 (every 4th), distinct per pixel and channel."""
    return tf.reshape(tf.range(64 * channels, dtype=tf.float32) * 4.0 % 256.0, [8, 8, channels])


def op(name, image, magnitude):
    return augment.apply_trivial_augment_op(
        image,
        tf.constant(augment.TRIVIAL_AUGMENT_OPS.index(name)),
        tf.constant(magnitude, tf.float32),
    ).numpy()


def test_trivial_augment_ops_compute_what_their_names_say():
    x = ramp()
    pixels = x.numpy()
    np.testing.assert_array_equal(op("identity", x, 0.7), pixels)
    np.testing.assert_allclose(
        op("brightness", x, 0.5), np.clip(pixels * (1 + 0.5 * 0.99), 0, 255), rtol=1e-6
    )
    # 2 bits kept
    np.testing.assert_array_equal(op("posterize", x, 1.0), np.floor(pixels / 64) * 64)
    np.testing.assert_array_equal(
        op("solarize", x, 0.5), np.where(pixels >= 127.5, 255 - pixels, pixels)
    )
    # 32 px: out of the image
    np.testing.assert_array_equal(op("translate_x", x, 1.0), np.zeros_like(pixels))
    shifted = op("translate_y", tf.ones([40, 4, 1]), 1.0)
    # rows y read y + 32: only the top 8 rows remain
    assert shifted[:8].all() and not shifted[8:].any()
    np.testing.assert_array_equal(op("rotate", tf.ones([9, 9, 1]), 0.0), np.ones((9, 9, 1)))
    contrast = op("autocontrast", x / 2 + 10, 0.3)
    assert contrast.min() == 0 and contrast.max() == 255
    grey = op("color", x, -1.0 / 0.99)  # factor 0: the luma in every channel
    np.testing.assert_allclose(
        grey, np.repeat(pixels @ [0.299, 0.587, 0.114], 3).reshape(8, 8, 3), atol=1e-3
    )
    flat = op("equalize", x, 0.0)
    assert len(np.unique(flat)) == len(np.unique(pixels)) and flat.max() <= 255


def test_trivial_augment_is_one_op_at_one_strength_per_seed():
    x = ramp()
    chosen = set()
    for i in range(60):
        index, magnitude = (t.numpy() for t in augment.trivial_augment_choice(seed(i)))
        assert -1 <= magnitude <= 1 and round(abs(magnitude) * 30, 4) == round(abs(magnitude) * 30)
        expected = augment.apply_trivial_augment_op(
            x, tf.constant(index), tf.constant(magnitude)
        ).numpy()
        np.testing.assert_array_equal(augment.trivial_augment(x, seed(i)).numpy(), expected)
        chosen.add(int(index))
    assert len(chosen) >= 12  # 60 draws of 14 ops


def test_rand_augment_applies_n_ops_at_magnitude_m_in_turn():
    """Each of the N draws is one of the TrivialAugment ops at sign * M / 10, applied in order: the
    result equals applying those ops by hand with the seeds RandAugment splits."""
    x = ramp()
    for i in range(10):
        ops, magnitude = 3, 7
        seeds = tf.random.experimental.stateless_split(seed(i), num=2 * ops)
        expected = tf.cast(x, tf.float32)
        for k in range(ops):
            index = tf.random.stateless_uniform(
                [], seeds[2 * k], minval=0, maxval=len(augment.TRIVIAL_AUGMENT_OPS), dtype=tf.int32
            )
            sign = -1.0 if tf.random.stateless_uniform([], seeds[2 * k + 1]).numpy() < 0.5 else 1.0
            expected = augment.apply_trivial_augment_op(expected, index, sign * magnitude / 10)
        got = augment.rand_augment(x, seed(i), ops=ops, magnitude=magnitude).numpy()
        np.testing.assert_allclose(got, expected.numpy(), rtol=1e-5, atol=1e-3)  # float32 rounding


@pytest.mark.parametrize(
    "spec,parsed",
    [("none", ("none", 0, 0)), ("randaugment", ("randaugment", 2, 9)),
     ("randaugment:3:4", ("randaugment", 3, 4))],
)  # fmt: skip
def test_auto_augment_specs(spec, parsed):
    assert augment.parse_auto_augment(spec) == parsed


@pytest.mark.parametrize("spec", ["randaugment:2:11", "randaugment:0:5", "randaugment:2", "rand"])
def test_bad_rand_augment_specs_say_what_is_wrong(spec):
    with pytest.raises(ValueError, match="randaugment"):
        augment.parse_auto_augment(spec)


@pytest.mark.parametrize(
    "options",
    [{"cutout": 4}, {"auto_augment": "trivialaugment"}, {"auto_augment": "randaugment:2:9"}],
)
def test_train_batches_with_cutout_or_trivial_augment(tmp_path, options):
    from tiny_run import write_tiny_npz

    dataset = data.load("npz", path=str(write_tiny_npz(tmp_path / "tiny.npz")), eval_fraction=0.25)
    plain = next(data.train_batches(dataset, batch_size=8, seed=0, augment="cifar"))
    first = next(data.train_batches(dataset, batch_size=8, seed=0, augment="cifar", **options))
    again = next(data.train_batches(dataset, batch_size=8, seed=0, augment="cifar", **options))
    assert first["image"].shape == plain["image"].shape == (8, 8, 8, 3)
    # resumable: a pure function of the seed
    np.testing.assert_array_equal(first["image"], again["image"])
    np.testing.assert_array_equal(first["label"], plain["label"])
    assert not np.array_equal(first["image"], plain["image"])


def test_trivial_augment_ops_match_pil():
    """PIL is the reference of TrivialAugment's ops; PIL rounds to uint8 levels, so they agree
    within 1.5."""
    from PIL import Image, ImageEnhance, ImageOps

    pixels = np.random.default_rng(0).integers(0, 200, (16, 16, 3)).astype(np.uint8)
    image, x = Image.fromarray(pixels), tf.constant(pixels)
    factor = 1 + 0.5 * 0.99
    references = {
        "equalize": (0.0, ImageOps.equalize(image)),
        "autocontrast": (0.0, ImageOps.autocontrast(image)),
        "sharpness": (0.5, ImageEnhance.Sharpness(image).enhance(factor)),
        "contrast": (0.5, ImageEnhance.Contrast(image).enhance(factor)),
        "color": (0.5, ImageEnhance.Color(image).enhance(factor)),
        "rotate": (30 / 135, image.rotate(-30)),
        "shear_x": (
            0.2,
            image.transform((16, 16), Image.AFFINE, (1, 0.2 * 0.99, 0, 0, 1, 0), Image.NEAREST),
        ),
    }
    for name, (magnitude, reference) in references.items():
        np.testing.assert_allclose(
            op(name, x, magnitude), np.asarray(reference, np.float32), atol=1.5, err_msg=name
        )
