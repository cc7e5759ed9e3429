"""Data parallelism on 8 fake CPU devices: pmap and jit-with-shardings compute the one-device
step."""

import functools

import chex
import jax
import numpy as np
import pytest

from resnet_jax import runtime
from resnet_jax.cpu import onednn
from resnet_jax.nn.models import get_model
from resnet_jax.training import optim, parallel, train

IMAGE_SHAPE = (8, 8, 3)
GLOBAL_BATCH = (
    16  # two examples per device: BatchNorm statistics must be cross-replica to match one device
)


def batches(n):
    rng = np.random.default_rng(0)
    for _ in range(n):
        labels = rng.integers(0, 4, GLOBAL_BATCH).astype(np.int32)
        images = (
            rng.normal(size=(GLOBAL_BATCH, *IMAGE_SHAPE)).astype(np.float32)
            + labels[:, None, None, None]
        )
        yield {"image": images, "label": labels, "mask": np.arange(GLOBAL_BATCH) < GLOBAL_BATCH - 3}


def run(mode, steps=3, conv_impl="xla"):
    """Per-step train metrics, eval sums and the final state (host) of `steps` updates in `mode`."""
    placement = parallel.Placement(mode)
    model = placement.model(
        get_model(
            "cifar_resnet",
            depth=8,
            width_multiplier=0.25,
            num_classes=4,
            conv_backend=runtime.conv_backend(conv_impl),
        )
    )
    lr_fn = optim.learning_rate_schedule("cosine", lr=0.1, total_steps=10, warmup_steps=1)
    tx = optim.make_optimizer("sgd", lr_fn, momentum=0.9, weight_decay=1e-4)
    state = train.create_train_state(
        model, tx, jax.random.key(0), image_shape=IMAGE_SHAPE, ema=False
    )
    step = placement.compile(
        functools.partial(
            train.train_step,
            apply_fn=model.apply,
            optimizer=optim.Optimizer(tx, lr_fn),
            axis_name=placement.axis_name,
        ),
        donate_state=True,
    )
    evaluate = placement.compile(
        functools.partial(train.eval_step, apply_fn=model.apply, axis_name=placement.axis_name),
        donate_state=False,
    )
    state = placement.put_state(jax.device_get(state))
    history = []
    for batch in batches(steps):
        state, metrics = step(state, placement.put_batch({k: batch[k] for k in ("image", "label")}))
        history.append(placement.to_host(metrics))
    sums = placement.to_host(evaluate(state, placement.put_batch(next(batches(1)))))
    return history, sums, placement.to_host(state)


@pytest.fixture(scope="module")
def one_device():
    return run("single")


@pytest.mark.parametrize(
    "mode,conv_impl",
    [
        ("pmap", "xla"),
        ("sharding", "xla"),
        # oneDNN's convolutions called from 8 device threads at once.
        pytest.param(
            "pmap", "onednn", marks=pytest.mark.skipif(not onednn.available(), reason="no oneDNN")
        ),
    ],
)
def test_data_parallel_step_equals_one_device_on_the_global_batch(mode, conv_impl, one_device):
    assert jax.device_count() == 8
    history, sums, state = run(mode, conv_impl=conv_impl)
    expected_history, expected_sums, expected_state = one_device
    for got, expected in zip(history, expected_history):
        chex.assert_trees_all_close(got, expected, rtol=1e-4, atol=1e-5)
    chex.assert_trees_all_close(sums, expected_sums, rtol=1e-4, atol=1e-4)
    assert float(sums["count"]) == GLOBAL_BATCH - 3
    # Params, optimizer state and the (cross-replica) BatchNorm running statistics.
    chex.assert_trees_all_close(state, expected_state, rtol=1e-4, atol=1e-5)
    assert int(state.step) == 3
    lr_fn = optim.learning_rate_schedule("cosine", lr=0.1, total_steps=10, warmup_steps=1)
    np.testing.assert_allclose(
        [h["learning_rate"] for h in history], [lr_fn(s) for s in range(3)], rtol=1e-6
    )


def test_pmap_keeps_one_copy_per_device_and_to_host_returns_one():
    placement = parallel.Placement("pmap")
    tree = {"w": np.arange(6.0).reshape(2, 3), "step": np.asarray(4, np.int32)}
    placed = placement.put_state(tree)
    assert placed["w"].shape == (8, 2, 3) and len(placed["w"].addressable_shards) == 8
    chex.assert_trees_all_equal(placement.to_host(placed), tree)
    batch = placement.put_batch({"image": np.zeros((16, 8, 8, 3), np.float32)})
    assert batch["image"].shape == (8, 2, 8, 8, 3)


def test_sharding_splits_the_batch_and_replicates_the_state():
    placement = parallel.Placement("sharding")
    batch = placement.put_batch({"label": np.arange(16)})
    assert {shard.data.shape for shard in batch["label"].addressable_shards} == {(2,)}
    state = placement.put_state({"w": np.ones(3)})
    assert state["w"].sharding.is_fully_replicated


def test_unknown_mode_is_an_error():
    with pytest.raises(ValueError, match="Unknown parallel mode 'dp'"):
        parallel.Placement("dp")
