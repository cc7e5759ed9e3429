"""conv2d against a float64 NumPy reference written here, over random stride, padding, dilation,
groups."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resnet_jax.nn.conv import Conv2D, conv2d
from resnet_jax.nn.shapes import ShapeError, output_size, resolve_padding


def reference_conv2d(x, kernel, stride, pads, dilation, groups, flip=False, mode="constant"):
    """Direct loops over output pixels, in float64: the definition of cross-correlation."""
    x, kernel = np.asarray(x, np.float64), np.asarray(kernel, np.float64)
    if flip:
        kernel = kernel[::-1, ::-1]
    n, h, w, c = x.shape
    kh, kw, cg, k = kernel.shape
    x = np.pad(x, [(0, 0), pads[0], pads[1], (0, 0)], mode=mode)
    out_h = (x.shape[1] - dilation * (kh - 1) - 1) // stride + 1
    out_w = (x.shape[2] - dilation * (kw - 1) - 1) // stride + 1
    kg = k // groups
    y = np.zeros((n, out_h, out_w, k))
    for i in range(out_h):
        for j in range(out_w):
            # [N, KH, KW, C]
            patch = x[
                :,
                i * stride : i * stride + dilation * (kh - 1) + 1 : dilation,
                j * stride : j * stride + dilation * (kw - 1) + 1 : dilation,
                :,
            ]
            for g in range(groups):
                y[:, i, j, g * kg : (g + 1) * kg] = np.einsum(
                    "nhwc,hwck->nk",
                    patch[..., g * cg : (g + 1) * cg],
                    kernel[..., g * kg : (g + 1) * kg],
                )
    return y


padding_forms = st.one_of(
    st.sampled_from(["SAME", "VALID", "SYMMETRIC"]),
    st.integers(0, 3),
    st.tuples(st.integers(0, 3), st.integers(0, 3)),
)


@settings(max_examples=40, deadline=None)
@given(
    h=st.integers(5, 12),
    w=st.integers(5, 12),
    kernel=st.integers(1, 4),
    stride=st.integers(1, 3),
    dilation=st.integers(1, 2),
    groups=st.sampled_from([1, 2, 3]),
    padding=padding_forms,
    flip=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_conv2d_matches_numpy_reference(
    h, w, kernel, stride, dilation, groups, padding, flip, seed
):
    rng = np.random.default_rng(seed)
    c, k = 2 * groups, 3 * groups
    x = rng.standard_normal((2, h, w, c)).astype(np.float32)
    weights = rng.standard_normal((kernel, kernel, c // groups, k)).astype(np.float32)
    try:
        expected_hw = [output_size(s, kernel, stride, padding, dilation) for s in (h, w)]
    except ShapeError:
        with pytest.raises(ShapeError):
            conv2d(x, weights, stride=stride, padding=padding, dilation=dilation, groups=groups)
        return
    y = conv2d(
        jnp.asarray(x),
        jnp.asarray(weights),
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        flip=flip,
    )
    pads = [resolve_padding(padding, s, kernel, stride, dilation) for s in (h, w)]
    expected = reference_conv2d(x, weights, stride, pads, dilation, groups, flip)
    assert list(y.shape[1:3]) == expected_hw
    np.testing.assert_allclose(np.asarray(y), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("mode,numpy_mode", [("CIRCULAR", "wrap"), ("REFLECT", "reflect")])
def test_circular_and_reflect_padding(mode, numpy_mode):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 7, 6, 2)).astype(np.float32)
    weights = rng.standard_normal((3, 3, 2, 4)).astype(np.float32)
    y = conv2d(x, weights, stride=2, padding=mode)
    pads = [resolve_padding("SAME", s, 3, 2) for s in (7, 6)]
    np.testing.assert_allclose(
        np.asarray(y),
        reference_conv2d(x, weights, 2, pads, 1, 1, mode=numpy_mode),
        rtol=1e-4,
        atol=1e-4,
    )


def test_flip_is_true_convolution():
    # Convolving a unit impulse with a kernel reproduces the kernel; cross-correlation gives it
    # rotated.
    x = np.zeros((1, 5, 5, 1), np.float32)
    x[0, 2, 2, 0] = 1.0
    kernel = np.arange(9, dtype=np.float32).reshape(3, 3, 1, 1)
    conv = np.asarray(conv2d(x, kernel, padding=1, flip=True))[0, 1:4, 1:4, 0]
    corr = np.asarray(conv2d(x, kernel, padding=1))[0, 1:4, 1:4, 0]
    np.testing.assert_array_equal(conv, kernel[..., 0, 0])
    np.testing.assert_array_equal(corr, kernel[::-1, ::-1, 0, 0])


def test_conv_module_is_pure_and_explicit():
    module = Conv2D(features=4, kernel_size=3, stride=2, padding=1, groups=2, use_bias=True)
    x = jnp.ones((2, 9, 9, 6))
    variables = module.init(jax.random.key(0), x)
    assert variables["params"]["kernel"].shape == (3, 3, 3, 4)
    assert variables["params"]["bias"].shape == (4,)
    y1, y2 = module.apply(variables, x), module.apply(variables, x)
    np.testing.assert_array_equal(y1, y2)
    assert y1.shape == (2, 5, 5, 4)
    np.testing.assert_allclose(
        y1,
        conv2d(x, variables["params"]["kernel"], stride=2, padding=1, groups=2)
        + variables["params"]["bias"].reshape(1, 1, 1, 4),
        rtol=1e-6,
    )


def test_conv_errors_are_clear():
    x = jnp.ones((1, 8, 8, 6))
    with pytest.raises(ShapeError, match="groups=4 must divide"):
        conv2d(x, jnp.ones((3, 3, 1, 8)), groups=4)
    with pytest.raises(ShapeError, match="expects 4 input channels"):
        conv2d(x, jnp.ones((3, 3, 2, 8)), groups=2)
    with pytest.raises(ShapeError, match="Layer 'tiny'.*collapses"):
        conv2d(x, jnp.ones((9, 9, 6, 1)), padding="VALID", layer="tiny")
