"""Our ResNets from Flax NNX (resnet_jax.NNXModel, through flax.nnx.bridge): the same logits as the
Linen model on the same variables, and an NNX training step that updates the weights and the
BatchNorm statistics."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import resnet_jax as rj


def test_nnx_logits_equal_the_linen_models_on_the_same_variables():
    linen = rj.get_model("cifar_resnet", depth=8)
    model = rj.NNXModel(linen, (1, 32, 32, 3), rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (4, 32, 32, 3))
    expected = linen.apply(model.linen_variables(), x, train=False)
    np.testing.assert_array_equal(model(x, train=False), expected)
    assert expected.shape == (4, 10)
    fresh = linen.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))  # the same tree as Linen's
    assert jax.tree.structure(fresh) == jax.tree.structure(model.linen_variables())


def test_one_nnx_training_step_updates_weights_and_batchnorm_statistics():
    model = rj.NNXModel(rj.get_model("cifar_resnet", depth=8), (1, 32, 32, 3), rngs=nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, optax.sgd(0.1, momentum=0.9), wrt=nnx.Param)
    images = jax.random.normal(jax.random.key(2), (8, 32, 32, 3))
    labels = jnp.arange(8) % 10

    @nnx.jit
    def train_step(model, optimizer, images, labels):
        def loss_fn(model):
            logits = model(images, train=True)
            return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

        loss, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads)
        return loss

    before = model.linen_variables()
    losses = [float(train_step(model, optimizer, images, labels)) for _ in range(3)]
    after = model.linen_variables()
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]
    for collection in ("params", "batch_stats"):
        changed = jax.tree.map(
            lambda a, b: bool(jnp.any(a != b)), before[collection], after[collection]
        )
        assert all(jax.tree.leaves(changed)), collection
