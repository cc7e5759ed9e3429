"""The shape annotations of resnet_jax.nn are checked in the tests (conftest sets
RESNET_JAX_CHECK_SHAPES=1) and cost nothing without the variable."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jaxtyping import TypeCheckError

from resnet_jax.nn import arrays
from resnet_jax.nn.blocks import BasicBlock
from resnet_jax.nn.conv import Conv2D, conv2d
from resnet_jax.nn.models import get_model
from resnet_jax.nn.norm import BatchNorm
from resnet_jax.nn.pool import GlobalAvgPool, max_pool2d

pytestmark = pytest.mark.skipif(not arrays.CHECK_SHAPES, reason="RESNET_JAX_CHECK_SHAPES is off")


def test_conv2d_refuses_images_without_a_batch_axis_with_the_annotation():
    with pytest.raises(TypeCheckError, match=r"parameter 'x'(.|\n)*n h w c"):
        conv2d(np.ones((8, 8, 3), np.float32), np.ones((3, 3, 3, 4), np.float32))


def test_conv2d_refuses_integer_images():
    with pytest.raises(TypeCheckError, match="parameter 'x'"):
        conv2d(np.ones((1, 8, 8, 3), np.int32), np.ones((3, 3, 3, 4), np.float32))


def test_conv2d_checks_its_result_against_the_kernel_and_the_batch():
    # A backend that forgets the kernel: K = 4 output channels promised, C = 3 returned.
    def identity(x, kernel, **kwargs):
        return x

    with pytest.raises(TypeCheckError, match="return"):
        conv2d(jnp.ones((2, 8, 8, 3)), jnp.ones((3, 3, 3, 4)), padding=1, backend=identity)


def test_annotations_are_checked_while_jit_traces():
    with pytest.raises(TypeCheckError, match="parameter 'x'"):
        jax.jit(lambda x: max_pool2d(x))(jnp.ones((8, 8, 3)))
    assert jax.jit(lambda x: max_pool2d(x))(jnp.ones((2, 8, 8, 3))).shape == (2, 4, 4, 3)


@pytest.mark.parametrize(
    "module",
    [
        Conv2D(4),
        BasicBlock(4, 1, "A", functools.partial(Conv2D, padding=1), BatchNorm),
        GlobalAvgPool(),
    ],
    ids=["Conv2D", "BasicBlock", "GlobalAvgPool"],
)
def test_modules_refuse_a_rank_3_input_with_the_annotation(module):
    with pytest.raises(TypeCheckError, match="n h w c"):
        module.init(jax.random.key(0), jnp.ones((8, 8, 3)))


def test_resnet_takes_nhwc_images_and_returns_logits_of_the_same_batch():
    model = get_model("cifar_resnet8", num_classes=10)
    variables = jax.eval_shape(model.init, jax.random.key(0), jnp.ones((2, 32, 32, 3)))
    assert jax.eval_shape(model.apply, variables, jnp.ones((2, 32, 32, 3))).shape == (2, 10)
    with pytest.raises(TypeCheckError, match=r"parameter 'x'(.|\n)*n h w c"):
        jax.eval_shape(model.apply, variables, jnp.ones((32, 32, 3)))


def test_without_the_variable_a_function_is_returned_unwrapped(monkeypatch):
    def f(x: arrays.Images) -> arrays.FeatureMap:
        return x

    monkeypatch.setattr(arrays, "CHECK_SHAPES", False)
    assert arrays.shape_checked(f) is f
    monkeypatch.setattr(arrays, "CHECK_SHAPES", True)
    assert arrays.shape_checked(f) is not f
