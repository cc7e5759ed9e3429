"""The recipe pieces, each off by default, each checked for what it computes: mixup and CutMix with
their label mixing, stochastic depth (drop-path, the linear rule), gradient accumulation against the
big batch, top-5."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_train import IMAGE_SHAPE, fake_batch
from tiny_run import load_config, tiny_config

from resnet_jax import build, errors, trainer
from resnet_jax.nn.drop_path import DropPath, drop_path, drop_path_rates
from resnet_jax.nn.models import get_model
from resnet_jax.training import mixing, optim, train


def images(n=8, seed=0):
    return jnp.asarray(np.random.default_rng(seed).normal(size=(n, 8, 8, 3)).astype(np.float32))


def test_mixup_blends_images_and_labels_by_one_lambda():
    x, labels = images(), jnp.arange(8) % 4
    mixed = mixing.mixup(jax.random.key(1), x, alpha=0.4)
    lam = float(mixed.lam)
    assert 0 < lam < 1 and sorted(np.asarray(mixed.partner)) == list(range(8))
    np.testing.assert_allclose(mixed.images, lam * x + (1 - lam) * x[mixed.partner], rtol=1e-6)
    targets = mixing.mixed_targets(labels, mixed, 4)
    expected = lam * np.eye(4)[labels] + (1 - lam) * np.eye(4)[labels[mixed.partner]]
    np.testing.assert_allclose(targets, expected, rtol=1e-6)
    # The loss against mixed labels is the lam-weighted loss against each image's two labels.
    logits = images(8, seed=3)[:, 0, 0, :].repeat(2, axis=1)[:, :4]
    np.testing.assert_allclose(
        train.cross_entropy(logits, targets),
        lam * train.cross_entropy(logits, labels)
        + (1 - lam) * train.cross_entropy(logits, labels[mixed.partner]),
        rtol=1e-5,
    )


def test_cutmix_pastes_one_box_and_lambda_is_the_pixels_kept():
    x = images()
    for seed in range(5):
        mixed = mixing.cutmix(jax.random.key(seed), x, alpha=1.0)
        # [N, H, W]
        from_partner = np.all(np.asarray(mixed.images) == np.asarray(x[mixed.partner]), axis=-1)
        own = np.all(np.asarray(mixed.images) == np.asarray(x), axis=-1)
        assert np.all(from_partner | own)
        # an image mixed with another than itself
        i = int(np.argmax(np.asarray(mixed.partner) != np.arange(8)))
        box = from_partner[i] & ~own[i]  # the pasted pixels
        kept = 1.0 - box.mean()
        np.testing.assert_allclose(float(mixed.lam), kept, rtol=1e-6)
        rows, cols = np.nonzero(box)
        if rows.size:  # one rectangle: every pixel of its bounding box is pasted
            assert box[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1].all()
            assert np.all(from_partner[:, rows.min() : rows.max() + 1, cols.min() : cols.max() + 1])


def test_cutmix_box_covers_one_minus_lambda_when_not_clipped():
    box = np.asarray(mixing.cutmix_box(jax.random.key(0), jnp.float32(0.75), 32, 32))
    # sides sqrt(0.25) * 32 = 16; clipped at the border the box is smaller, never larger
    assert box.sum() <= 16 * 16 and box.sum() > 0


def test_both_alphas_pick_mixup_or_cutmix_per_batch():
    x = images()
    kinds = set()
    mix = jax.jit(functools.partial(mixing.mix, mixup_alpha=0.2, cutmix_alpha=1.0))
    for seed in range(12):
        mixed = mix(jax.random.key(seed), x)
        exact = np.all(
            (np.asarray(mixed.images) == np.asarray(x))
            | (np.asarray(mixed.images) == np.asarray(x[mixed.partner]))
        )
        kinds.add("cutmix" if exact else "mixup")
    assert kinds == {"mixup", "cutmix"}


def test_train_step_with_mixing_learns_from_the_mixed_batch():
    model = get_model("cifar_resnet", depth=8, width_multiplier=0.25, num_classes=4)
    tx = optim.make_optimizer("sgd", 0.1)
    state = train.create_train_state(
        model, tx, jax.random.key(0), image_shape=IMAGE_SHAPE, ema=False
    )
    batch = fake_batch(0)
    step = functools.partial(
        train.train_step,
        apply_fn=model.apply,
        optimizer=optim.Optimizer(tx, lambda s: 0.1),
        rng=jax.random.key(5),
    )
    mixed_step = jax.jit(functools.partial(step, recipe=train.Recipe(mixup=0.4, cutmix=1.0)))
    losses = []
    for _ in range(3):
        state, metrics = mixed_step(state, batch)
        losses.append(float(metrics["loss"]))
    # a new mix each step (the key folds the step)
    assert np.all(np.isfinite(losses)) and len(set(losses)) == 3


def test_drop_path_zeroes_whole_examples_and_rescales_the_rest():
    x = jnp.ones((4000, 2, 2, 3))
    y = np.asarray(drop_path(x, 0.25, jax.random.key(0)))
    per_example = y.reshape(4000, -1)
    assert np.all((per_example == 0).all(1) | np.isclose(per_example, 1 / 0.75).all(1))
    assert abs((per_example[:, 0] == 0).mean() - 0.25) < 0.03  # dropped with probability 0.25
    assert abs(y.mean() - 1.0) < 0.05  # the expectation is kept


def test_linear_rule_over_depth():
    assert drop_path_rates(0.2, 4) == pytest.approx([0.05, 0.1, 0.15, 0.2])


def test_resnet_drop_path_rates_follow_the_rule_and_eval_is_deterministic():
    model = get_model("cifar_resnet14", width_multiplier=0.25, drop_path_rate=0.3)  # 6 blocks
    x = images(4)
    variables = jax.jit(model.init)(jax.random.key(0), x)
    rates = []

    def record(next_fun, args, kwargs, context):
        if isinstance(context.module, DropPath) and context.method_name == "__call__":
            rates.append(context.module.rate)
        return next_fun(*args, **kwargs)

    @jax.jit
    def train_logits(key):
        return model.apply(
            variables, x, train=True, mutable=["batch_stats"], rngs={"drop_path": key}
        )[0]

    with nn.intercept_methods(record):
        # traced here, so the interceptor sees every block
        train_a = train_logits(jax.random.key(1))
    assert rates == pytest.approx(drop_path_rates(0.3, 6))
    assert not np.allclose(train_a, train_logits(jax.random.key(2)))  # different branches dropped
    plain = get_model("cifar_resnet14", width_multiplier=0.25)
    np.testing.assert_array_equal(
        jax.jit(model.apply)(variables, x), jax.jit(plain.apply)(variables, x)
    )


class Linear(nn.Module):
    """A model without BatchNorm (a dummy statistic keeps the train step's interface): the
    big-batch gradient is exactly the mean of the micro-batch gradients."""

    @nn.compact
    def __call__(self, x, train=False):
        self.variable("batch_stats", "unused", jnp.zeros, ())
        return nn.Dense(4)(x.reshape(x.shape[0], -1))


def run_updates(model, batches, *, accumulate, total_batches):
    o = load_config().optim
    o.update(lr=0.1, warmup_steps=0, weight_decay=1e-3, schedule="cosine")
    optimizer = build.optimizer(o, steps=total_batches, accumulate_steps=accumulate)
    state = train.create_train_state(
        model, optimizer.tx, jax.random.key(0), image_shape=IMAGE_SHAPE, ema=False
    )
    step = jax.jit(functools.partial(train.train_step, apply_fn=model.apply, optimizer=optimizer))
    for batch in batches:
        state, _ = step(state, batch)
    return state


def concat(batches):
    return {key: np.concatenate([b[key] for b in batches]) for key in batches[0]}


def test_accumulated_gradients_make_the_big_batch_update():
    micro = [fake_batch(seed) for seed in range(8)]  # 8 batches of 8: two updates of 32 examples
    accumulated = run_updates(Linear(), micro, accumulate=4, total_batches=8)
    big = run_updates(
        Linear(), [concat(micro[:4]), concat(micro[4:])], accumulate=1, total_batches=2
    )
    assert int(accumulated.step) == 8 and int(big.step) == 2
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
        accumulated.params,
        big.params,
    )


@pytest.mark.slow  # overlaps a default test; kept out of CI's 10-minute budget
def test_accumulation_with_batchnorm_matches_the_big_batch_of_equal_micro_batches():
    """BatchNorm normalises each micro-batch by its own statistics, so accumulation equals the big
    batch only when the micro-batches have the same statistics: here the big batch is 4 copies of
    one batch. The running statistics still differ (updated 4 times instead of once), so only the
    parameters are compared."""
    model = get_model("cifar_resnet", depth=8, width_multiplier=0.25, num_classes=4)
    batch = fake_batch(0)
    accumulated = run_updates(model, [batch] * 4, accumulate=4, total_batches=4)
    big = run_updates(model, [concat([batch] * 4)], accumulate=1, total_batches=1)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
        accumulated.params,
        big.params,
    )


def test_eval_step_counts_top5():
    # class 0 best, class 9 worst
    logits = jnp.asarray(np.tile(np.arange(10, dtype=np.float32)[::-1], (4, 1)))
    batch = {
        "image": jnp.zeros((4, 1)),
        "label": jnp.array([0, 4, 5, 9]),
        "mask": jnp.array([1, 1, 1, 0], bool),
    }
    state = train.TrainState(jnp.zeros((), jnp.int32), {}, {}, (), None)
    sums = train.eval_step(state, batch, apply_fn=lambda variables, images, train: logits)
    assert (float(sums["correct"]), float(sums["correct5"]), float(sums["count"])) == (1, 2, 3)


@pytest.mark.parametrize(
    "field, value, message",
    [
        (
            "data.auto_augment",
            "randaug",
            "config.data.auto_augment='randaug': use 'none', 'trivialaugment', 'randaugment' or "
            "'randaugment:N:M' (N ops, magnitude M)",
        ),
        (
            "data.augment",
            "autoaugment",
            "config.data.augment='autoaugment': use one of ('none', 'cifar', 'imagenet')",
        ),
        (
            "train.accumulate_steps",
            4,
            "config.train.accumulate_steps=4: batches per update: must be >= 1 and divide "
            "train.steps=6",
        ),
        ("data.mixup", -0.2, "config.data.mixup=-0.2: must be >= 0 (0 turns it off)"),
        ("model.drop_path_rate", 1.0, "config.model: drop_path_rate must lie in [0, 1), got 1.0."),
    ],
)
def test_bad_recipe_fields_are_named(tmp_path, field, value, message):
    config = tiny_config(tmp_path / "x.npz", **{field: value})
    with pytest.raises(errors.UserError) as error:
        build.validate_config(config, device_count=1, process_count=1)
    assert str(error.value) == message


@pytest.mark.parametrize(
    "parallel, dtype",
    [pytest.param("single", "float32", marks=pytest.mark.slow), ("pmap", "bfloat16")],
)
def test_a_run_with_every_recipe_piece_on(tmp_path, parallel, dtype):
    from tiny_run import write_tiny_npz

    config = tiny_config(
        write_tiny_npz(tmp_path / "tiny.npz"),
        data__cutout=3,
        data__auto_augment="trivialaugment",
        data__mixup=0.2,
        data__cutmix=1.0,
        model__drop_path_rate=0.1,
        train__accumulate_steps=2,
        train__parallel=parallel,
        train__dtype=dtype,
    )
    build.validate_config(config, device_count=jax.device_count(), process_count=1)
    state, summary = trainer.run(config, str(tmp_path / "run"))
    assert int(state.step) == 6 and np.isfinite(summary["train/loss"])
    assert summary["eval/top5"] == 1.0  # 4 classes
    assert int(state.opt_state.gradient_step) == 3  # 6 batches, 2 per update
    # bfloat16 computes; parameters and BatchNorm statistics stay float32
    assert {leaf.dtype for leaf in jax.tree.leaves((state.params, state.batch_stats))} == {
        np.dtype("float32")
    }
