"""The train and eval steps: compiled once, learning, mixed precision, losses, optimizers,
schedules, NaN stop."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from resnet_jax.nn.models import get_model
from resnet_jax.training import checkpoint, optim, train

IMAGE_SHAPE = (8, 8, 3)


def tiny_model(**overrides):
    return get_model("cifar_resnet", depth=8, width_multiplier=0.25, num_classes=4, **overrides)


def fake_batch(seed, n=8):
    """Learnable: class k brightens rows 2k, 2k+1."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, n).astype(np.int32)
    images = rng.normal(size=(n, *IMAGE_SHAPE)).astype(np.float32)
    images[np.arange(n), 2 * labels] += 3.0
    images[np.arange(n), 2 * labels + 1] += 3.0
    return {"image": images, "label": labels}


def setup(model=None, lr=0.1, ema=False, **optimizer):
    model = model or tiny_model()
    lr_fn = optax.constant_schedule(lr)
    tx = optim.make_optimizer(optimizer.pop("name", "sgd"), lr_fn, **optimizer)
    state = train.create_train_state(model, tx, jax.random.key(0), image_shape=IMAGE_SHAPE, ema=ema)
    step = functools.partial(
        train.train_step, apply_fn=model.apply, optimizer=optim.Optimizer(tx, lr_fn)
    )
    return model, tx, state, step


@pytest.fixture(scope="module")
def sgd():
    """One compiled SGD step shared by the tests below; it fails if any call makes it trace
    again."""
    model, tx, state, step = setup(weight_decay=0.1, exclude_bn_and_bias=True)
    return (
        model,
        tx,
        state,
        jax.jit(chex.assert_max_traces(lambda state, batch: step(state, batch), n=1)),
    )


def test_train_step_compiles_once_and_fits_a_batch(sgd):
    _, _, state, step = sgd
    batch = fake_batch(0)
    losses = []
    for _ in range(12):
        state, metrics = step(state, batch)
        losses.append(float(metrics["loss"]))
    assert int(state.step) == 12
    assert losses[-1] < 0.3 * losses[0], losses


def test_training_loop_traces_each_step_once(tmp_path, monkeypatch):
    chex.clear_trace_counter()
    monkeypatch.setattr(train, "train_step", chex.assert_max_traces(train.train_step, n=1))
    monkeypatch.setattr(train, "eval_step", chex.assert_max_traces(train.eval_step, n=1))
    state, summary = run_loop(tmp_path, steps=6, ema_decay=0.5)  # 2 evaluations, 3 checkpoints
    assert np.isfinite(summary["eval/loss"])
    # eval used the moving average, which trails the params
    assert set(state.ema) == {
        "params",
        "batch_stats",
    }
    assert not np.allclose(state.ema["params"]["head"]["kernel"], state.params["head"]["kernel"])


def run_loop(workdir, *, steps, lr=0.1, nan_at=None, parallel_mode="single", ema_decay=0.0, keep=3):
    model = tiny_model()
    lr_fn = optax.constant_schedule(lr)
    tx = optim.make_optimizer("sgd", lr_fn, momentum=0.9)

    def train_batches(start):
        for step in range(start, 10**6):
            batch = fake_batch(step)
            if nan_at is not None and step + 1 == nan_at:  # the batch of the update numbered nan_at
                batch["image"][0, 0, 0, 0] = np.nan
            yield batch

    def eval_batches():
        batch = fake_batch(-1 % 2**32)
        return [{**batch, "mask": np.arange(8) < 6}]

    return train.train_and_evaluate(
        model=model,
        optimizer=optim.Optimizer(tx, lr_fn),
        data=train.Input(train_batches, eval_batches, IMAGE_SHAPE, batch_size=8),
        loop=train.Loop(
            steps, eval_every=3, checkpoint_every=2, log_every=5, keep_checkpoints=keep
        ),
        workdir=str(workdir),
        seed=0,
        parallel_mode=parallel_mode,
        recipe=train.Recipe(ema_decay=ema_decay),
    )


def test_nan_loss_stops_naming_the_step_and_saves_nothing_after_it(tmp_path):
    with pytest.raises(FloatingPointError, match=r"loss is nan at step 3\b"):
        run_loop(tmp_path, steps=8, nan_at=3)
    assert checkpoint.Checkpoints(str(tmp_path / "checkpoints"), keep=3).steps() == [2]


def test_mixed_precision_computes_in_bfloat16_and_keeps_float32_state():
    model = tiny_model(dtype=jnp.bfloat16)
    _, _, state, step = setup(model)
    state, metrics = jax.jit(step)(state, fake_batch(0))
    assert metrics["loss"].dtype == jnp.float32 and np.isfinite(metrics["loss"])
    dtypes = {
        x.dtype
        for x in jax.tree.leaves((state.params, state.batch_stats, state.opt_state))
        if jnp.issubdtype(x.dtype, jnp.floating)
    }
    assert dtypes == {jnp.dtype(jnp.float32)}
    hidden = jax.jit(
        lambda v, x: model.apply(v, x, capture_intermediates=True, mutable=["intermediates"])
    )({"params": state.params, "batch_stats": state.batch_stats}, fake_batch(0)["image"])[1]
    assert hidden["intermediates"]["stage1_block0"]["conv1"]["__call__"][0].dtype == jnp.bfloat16


def test_label_smoothing_is_cross_entropy_against_smoothed_targets():
    logits = jnp.array([[2.0, 0.0, -1.0, 0.5]])
    smoothed = jnp.array([[0.9 + 0.025, 0.025, 0.025, 0.025]])
    expected = -jnp.sum(smoothed * jax.nn.log_softmax(logits))
    np.testing.assert_allclose(
        train.cross_entropy(logits, jnp.array([0]), 0.1), [expected], rtol=1e-6
    )
    np.testing.assert_allclose(
        train.cross_entropy(logits, jnp.array([0]), 0.0),
        -jax.nn.log_softmax(logits)[:, 0],
        rtol=1e-6,
    )


def test_eval_step_ignores_padding(sgd):
    model, _, state, _ = sgd
    batch = fake_batch(1)
    padded = {
        "image": np.concatenate([batch["image"], np.full_like(batch["image"], 1e3)]),
        "label": np.concatenate([batch["label"], batch["label"]]),
        "mask": np.arange(16) < 8,
    }
    evaluate = jax.jit(functools.partial(train.eval_step, apply_fn=model.apply))
    full = evaluate(state, {**batch, "mask": np.ones(8, bool)})
    chex.assert_trees_all_close(full, evaluate(state, padded), rtol=1e-5)
    assert float(full["count"]) == 8


def test_weight_decay_skips_batchnorm_and_biases_when_asked(sgd):
    _, tx, state, _ = sgd  # SGD, lr 0.1, weight decay 0.1, exclude_bn_and_bias=True
    mask = optim.decay_mask(state.params)
    assert mask["stem_conv"]["kernel"] and mask["head"]["kernel"]
    assert not mask["stem_bn"]["scale"] and not mask["stem_bn"]["bias"] and not mask["head"]["bias"]
    zero = jax.tree.map(jnp.zeros_like, state.params)
    updates, _ = tx.update(zero, state.opt_state, state.params)  # only the decay moves anything
    assert not np.any(updates["stem_bn"]["scale"]) and not np.any(updates["head"]["bias"])
    np.testing.assert_allclose(
        updates["head"]["kernel"], -0.1 * 0.1 * state.params["head"]["kernel"], rtol=1e-6
    )


@pytest.mark.parametrize("name", optim.OPTIMIZERS)
@pytest.mark.parametrize("nesterov", [False, True])
def test_every_optimizer_takes_a_finite_descent_step(name, nesterov):
    params = {"conv": {"kernel": jnp.ones((3, 3, 2, 2))}, "bn": {"scale": jnp.ones(2)}}
    grads = jax.tree.map(lambda p: 0.5 * p, params)  # the gradient of 0.25 |p|^2
    tx = optim.make_optimizer(name, 0.01, momentum=0.9, nesterov=nesterov, weight_decay=1e-4)
    updates, _ = tx.update(grads, tx.init(params), params)
    for update in jax.tree.leaves(updates):
        assert np.isfinite(update).all() and (update < 0).all()
    with pytest.raises(ValueError, match="Unknown optimizer"):
        optim.make_optimizer("rmsprop", 0.1)


def test_gradient_clipping_bounds_the_update():
    params = {"w": jnp.ones((4, 4))}
    tx = optim.make_optimizer("sgd", 1.0, momentum=0.0, grad_clip=1e-3)
    updates, _ = tx.update({"w": jnp.full((4, 4), 1e6)}, tx.init(params), params)
    assert float(optax.tree.norm(updates)) == pytest.approx(1e-3, rel=1e-4)


def test_ema_update():
    average = optim.ema_update({"a": jnp.ones(3)}, {"a": jnp.zeros(3)}, 0.9)
    np.testing.assert_allclose(average["a"], 0.9)


def test_schedules():
    step_lr = optim.learning_rate_schedule(
        "step", lr=0.1, total_steps=100, boundaries=(50, 75), scales=(0.1, 0.1)
    )
    np.testing.assert_allclose(
        [step_lr(s) for s in (0, 49, 50, 74, 75, 99)], [0.1, 0.1, 0.01, 0.01, 1e-3, 1e-3], rtol=1e-6
    )
    warm = optim.learning_rate_schedule(
        "step", lr=0.01, total_steps=100, warmup_steps=10, boundaries=(40,), scales=(10.0,)
    )
    np.testing.assert_allclose(
        [warm(s) for s in (0, 5, 10, 39, 40)], [0.0, 0.005, 0.01, 0.01, 0.1], rtol=1e-6
    )
    cosine = optim.learning_rate_schedule("cosine", lr=0.2, total_steps=110, warmup_steps=10)
    np.testing.assert_allclose(
        [cosine(s) for s in (0, 5, 10, 60, 110)], [0.0, 0.1, 0.2, 0.1, 0.0], atol=1e-6
    )
    onecycle = optim.learning_rate_schedule("onecycle", lr=0.4, total_steps=100, warmup_steps=20)
    assert (
        float(onecycle(20)) == pytest.approx(0.4)
        and float(onecycle(0)) < 0.02
        and float(onecycle(100)) < 1e-4
    )
    with pytest.raises(ValueError, match="Unknown schedule"):
        optim.learning_rate_schedule("linear", lr=0.1, total_steps=10)


def test_train_profile_writes_a_trace_of_the_steps_asked_for_and_nothing_when_off(tmp_path):
    """train.profile='2:2': a jax.profiler trace (an .xplane.pb TensorBoard's profile plugin reads)
    in WORKDIR/profile; a range past the run's steps is one error naming the field."""
    from tiny_run import tiny_config, write_tiny_npz

    from resnet_jax import build, trainer

    npz = write_tiny_npz(tmp_path / "tiny.npz")
    config = tiny_config(npz, train__steps=4, train__profile="2:2")
    trainer.run(config, tmp_path / "run")
    assert list((tmp_path / "run" / "profile").rglob("*.xplane.pb"))
    assert sorted(p.name for p in (tmp_path / "run").iterdir() if p.is_dir()) == [
        "checkpoints",
        "profile",
    ]  # the other folders of a run are its logs' files
    with pytest.raises(ValueError, match=r"config.train.profile='3:5': give START:COUNT"):
        build.validate_config(
            tiny_config(npz, train__profile="3:5"), device_count=1, process_count=1
        )
