"""output_size and padding resolution: the formula, its padding forms, and its errors."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from resnet_jax.nn.shapes import ShapeError, output_size, resolve_padding, stack_receptive_field

sizes, kernels, strides, pads, dilations = (
    st.integers(1, 64),
    st.integers(1, 7),
    st.integers(1, 4),
    st.integers(0, 4),
    st.integers(1, 3),
)


@given(sizes, kernels, strides, pads, dilations)
def test_int_padding_is_the_textbook_formula(size, kernel, stride, padding, dilation):
    expected = math.floor((size + 2 * padding - dilation * (kernel - 1) - 1) / stride) + 1
    if expected >= 1:
        assert output_size(size, kernel, stride, padding, dilation) == expected
    else:
        with pytest.raises(ShapeError):
            output_size(size, kernel, stride, padding, dilation)


@given(sizes, kernels, strides, dilations)
def test_same_gives_ceil_and_valid_gives_no_padding(size, kernel, stride, dilation):
    assert output_size(size, kernel, stride, "SAME", dilation) == math.ceil(size / stride)
    low, high = resolve_padding("SAME", size, kernel, stride, dilation)
    assert 0 <= high - low <= 1  # XLA puts the odd pixel on the high side
    effective = dilation * (kernel - 1) + 1
    if size >= effective:
        assert (
            output_size(size, kernel, stride, "VALID", dilation) == (size - effective) // stride + 1
        )


@given(sizes, kernels, strides, pads, pads)
def test_pair_padding_equals_sum_of_sides(size, kernel, stride, low, high):
    total = size + low + high - kernel
    if total >= 0:
        assert output_size(size, kernel, stride, (low, high)) == total // stride + 1


def test_same_is_asymmetric_where_pytorch_is_not():
    # The interop issue's examples: 3x3/2 on 56 and 112, 7x7/2 on 224.
    assert resolve_padding("SAME", 56, 3, 2) == (0, 1)
    assert resolve_padding("SAME", 112, 3, 2) == (0, 1)
    assert resolve_padding("SAME", 224, 7, 2) == (2, 3)
    assert resolve_padding("SYMMETRIC", 224, 7, 2) == (3, 3)
    assert resolve_padding("SYMMETRIC", 56, 3, 2, dilation=2) == (2, 2)


def test_collapse_error_names_layer_sizes_and_formula():
    with pytest.raises(ShapeError) as info:
        output_size(4, 7, 1, 0, layer="stem_conv")
    message = str(info.value)
    assert "stem_conv" in message and "input size 4" in message and "kernel 7" in message
    assert "floor(" in message and "= -2" in message


@pytest.mark.parametrize("bad", ["FULL", -1, (1,), (1, -2), 1.5])
def test_bad_padding_is_rejected(bad):
    with pytest.raises(ValueError):
        output_size(8, 3, 1, bad)


def test_stack_of_3x3_convs_has_receptive_field_2n_plus_1():
    for n in range(1, 11):
        assert stack_receptive_field([3] * n) == (2 * n + 1, 1)
    assert stack_receptive_field([3] * 10)[0] == 21
    # Stride multiplies the jump, so later layers grow the field faster: 3 -> 7 -> 15.
    assert stack_receptive_field([3, 3, 3], [2, 2, 2]) == (15, 8)
    assert stack_receptive_field([3], dilations=[4]) == (9, 1)
