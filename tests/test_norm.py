"""BatchNorm (resnet_jax/nn/norm.py): flax's variables and values, and a hand-written gradient
equal to autodiff's."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from resnet_jax.nn.norm import BatchNorm, batch_norm


def _inputs(shape=(8, 6, 5, 16), seed=0):
    keys = jax.random.split(jax.random.key(seed), 4)
    x = jax.random.normal(keys[0], shape) * 2.0 + 1.0
    scale = jax.random.normal(keys[1], shape[-1:])
    bias = jax.random.normal(keys[2], shape[-1:])
    cotangent = jax.random.normal(keys[3], shape)
    return x, scale, bias, cotangent


def _autodiff_batch_norm(x, scale, bias, relu, axis_name=None):
    """The textbook formula, differentiated by JAX: what batch_norm's custom gradient must
    reproduce."""
    axes = tuple(range(x.ndim - 1))
    mean, mean_sq = x.mean(axes), (x * x).mean(axes)
    if axis_name is not None:
        mean, mean_sq = jax.lax.pmean(jnp.stack([mean, mean_sq]), axis_name)
    var = jnp.maximum(0.0, mean_sq - mean * mean)
    y = (x - mean[None, None, None]) * (jax.lax.rsqrt(var + 1e-5) * scale)[None, None, None] + bias[
        None, None, None
    ]
    return jnp.maximum(y, 0.0) if relu else y


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_batchnorm_has_flax_variables_values_and_running_averages(train, dtype):
    x = _inputs()[0].astype(dtype)
    theirs = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5)
    ours = BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5)
    variables = theirs.init(jax.random.key(1), x)
    assert jax.tree.structure(ours.init(jax.random.key(1), x)) == jax.tree.structure(variables)
    variables = {
        "params": {"scale": jnp.linspace(0.5, 2.0, 16), "bias": jnp.linspace(-1.0, 1.0, 16)},
        "batch_stats": {"mean": jnp.linspace(-0.2, 0.2, 16), "var": jnp.linspace(0.5, 1.5, 16)},
    }
    expected, expected_stats = theirs.apply(variables, x, mutable=["batch_stats"])
    got, got_stats = ours.apply(variables, x, mutable=["batch_stats"])
    assert got.dtype == expected.dtype
    tolerance = 1e-6 if dtype == jnp.float32 else 1e-2
    np.testing.assert_allclose(
        np.asarray(got, np.float32),
        np.asarray(expected, np.float32),
        rtol=tolerance,
        atol=tolerance,
    )
    for name in ("mean", "var"):
        np.testing.assert_allclose(
            got_stats["batch_stats"][name], expected_stats["batch_stats"][name], rtol=1e-6
        )
    relu = ours.apply(variables, x, relu=True, mutable=["batch_stats"])[0]
    np.testing.assert_array_equal(np.asarray(relu), np.asarray(jnp.maximum(got, 0)))


@pytest.mark.parametrize("relu", [False, True])
def test_batch_norm_gradient_equals_autodiff(relu):
    x, scale, bias, cotangent = _inputs()

    def loss(f):
        return lambda x, scale, bias: jnp.sum(f(x, scale, bias) * cotangent)

    ours = jax.grad(loss(lambda *a: batch_norm(*a, epsilon=1e-5, relu=relu)[0]), argnums=(0, 1, 2))(
        x, scale, bias
    )
    theirs = jax.grad(loss(lambda *a: _autodiff_batch_norm(*a, relu)), argnums=(0, 1, 2))(
        x, scale, bias
    )
    for got, expected in zip(ours, theirs):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_batch_norm_gradient_with_cross_replica_statistics_equals_autodiff():
    # Two replicas of 4 images each, as under pmap (vmap binds the axis name the same way).
    x, scale, bias, cotangent = _inputs()
    xs, cotangents = x.reshape(2, 4, *x.shape[1:]), cotangent.reshape(2, 4, *x.shape[1:])

    def replica_grads(f):
        def grads(x, cotangent):
            return jax.grad(
                lambda x, scale, bias: jnp.sum(f(x, scale, bias) * cotangent), argnums=(0, 1, 2)
            )(x, scale, bias)

        return jax.vmap(grads, axis_name="batch")(xs, cotangents)

    ours = replica_grads(lambda *a: batch_norm(*a, epsilon=1e-5, relu=True, axis_name="batch")[0])
    theirs = replica_grads(lambda *a: _autodiff_batch_norm(*a, True, axis_name="batch"))
    for got, expected in zip(ours, theirs):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    # And the cross-replica statistics are the whole batch's: the same values as one replica of 8
    # images.
    whole = batch_norm(x, scale, bias, epsilon=1e-5, relu=True)[0]
    split = jax.vmap(
        lambda x: batch_norm(x, scale, bias, epsilon=1e-5, relu=True, axis_name="batch")[0],
        axis_name="batch",
    )(xs)
    np.testing.assert_allclose(split.reshape(x.shape), whole, rtol=1e-5, atol=1e-5)
