"""Shape arithmetic for convolutions and pools: the one formula every shape check in the project
uses.

    output_size = floor((size + pad_low + pad_high - dilation * (kernel - 1) - 1) / stride) + 1

With symmetric padding p this is the textbook `floor((in + 2p - k) / s) + 1` (dilation 1).
`resolve_padding` turns every padding form the convolutions accept into the explicit (low, high)
pair the formula needs.
"""

from __future__ import annotations

from collections.abc import Sequence

# A padding for one spatial dimension: 'SAME' | 'SYMMETRIC' | 'VALID' | 'CIRCULAR' | 'REFLECT' (any
# case) | p | (low, high).
PaddingLike = str | int | Sequence[int]

FORMULA = "floor((size + pad_low + pad_high - dilation*(kernel-1) - 1) / stride) + 1"
STRING_PADDINGS = ("SAME", "SYMMETRIC", "VALID", "CIRCULAR", "REFLECT")


class ShapeError(ValueError):
    """A layer's configuration leaves no valid output (a map of size <= 0, or shapes that cannot be
    added)."""


def _check_positive(name: str, value: int, layer: str | None) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        where = f"{layer}: " if layer else ""
        raise ValueError(f"{where}{name} must be a positive integer, got {value!r}.")


def resolve_padding(
    padding: PaddingLike, size: int, kernel: int, stride: int = 1, dilation: int = 1
) -> tuple[int, int]:
    """Explicit (low, high) padding of one spatial dimension.

    'SAME' follows XLA/TensorFlow: output ceil(size / stride), and when the total padding is odd
    the extra pixel goes on the high side (so a 3x3 stride-2 conv on 56 pixels pads (0, 1), not
    PyTorch's (1, 1)).
    'SYMMETRIC' is PyTorch's habit, dilation * (kernel - 1) // 2 on both sides: (1, 1) for every
    3x3, (3, 3) for the 7x7 stem, whatever the stride; it equals 'SAME' for odd kernels at stride 1.
    'CIRCULAR' and 'REFLECT' pad like 'SAME' but with wrapped or mirrored pixels instead of zeros.
    """
    effective_kernel = dilation * (kernel - 1) + 1
    if isinstance(padding, str):
        mode = padding.upper()
        if mode == "VALID":
            return (0, 0)
        if mode == "SYMMETRIC":
            return (dilation * (kernel - 1) // 2,) * 2
        if mode in ("SAME", "CIRCULAR", "REFLECT"):
            out = -(-size // stride)  # ceil(size / stride)
            total = max((out - 1) * stride + effective_kernel - size, 0)
            return (total // 2, total - total // 2)
        raise ValueError(
            f"Unknown padding {padding!r}: use one of {STRING_PADDINGS}, an int, or a (low, high) "
            "pair."
        )
    if isinstance(padding, int) and not isinstance(padding, bool):
        if padding < 0:
            raise ValueError(f"Padding must be >= 0, got {padding}.")
        return (padding, padding)
    pair = tuple(padding) if isinstance(padding, (tuple, list)) else ()
    if len(pair) != 2 or not all(isinstance(p, int) and p >= 0 for p in pair):
        raise ValueError(
            f"Padding pair must be two non-negative ints (low, high), got {padding!r}."
        )
    return pair  # type: ignore[return-value]


def output_size(
    size: int,
    kernel: int,
    stride: int = 1,
    padding: PaddingLike = 0,
    dilation: int = 1,
    *,
    layer: str | None = None,
) -> int:
    """Spatial output size of a conv or pool along one dimension.

    Raises ShapeError, naming `layer`, the sizes and the formula, when the output would be empty.
    """
    for name, value in (
        ("size", size),
        ("kernel", kernel),
        ("stride", stride),
        ("dilation", dilation),
    ):
        _check_positive(name, value, layer)
    low, high = resolve_padding(padding, size, kernel, stride, dilation)
    out = (size + low + high - dilation * (kernel - 1) - 1) // stride + 1
    if out < 1:
        where = f"Layer '{layer}'" if layer else "A layer"
        raise ShapeError(
            f"{where} collapses its feature map to {out}: input size {size}, kernel {kernel}, "
            f"stride {stride}, "
            f"padding ({low}, {high}), dilation {dilation}; output = {FORMULA} = "
            f"floor(({size} + {low} + {high} - {dilation}*({kernel}-1) - 1) / {stride}) + 1 = "
            f"{out}. "
            f"Use a larger input, more padding, or a smaller kernel or stride."
        )
    return out


def receptive_field_step(
    rf: int, jump: int, kernel: int, stride: int = 1, dilation: int = 1
) -> tuple[int, int]:
    """Receptive field and jump (effective stride, in input pixels) after one more conv or pool
    layer.

    rf_out = rf_in + dilation * (kernel - 1) * jump_in;  jump_out = jump_in * stride.
    """
    return rf + dilation * (kernel - 1) * jump, jump * stride


def stack_receptive_field(
    kernels: Sequence[int],
    strides: Sequence[int] | None = None,
    dilations: Sequence[int] | None = None,
) -> tuple[int, int]:
    """Receptive field and jump of a chain of layers, starting from one input pixel (rf 1, jump
    1)."""
    strides = strides or [1] * len(kernels)
    dilations = dilations or [1] * len(kernels)
    rf, jump = 1, 1
    for k, s, d in zip(kernels, strides, dilations, strict=True):
        rf, jump = receptive_field_step(rf, jump, k, s, d)
    return rf, jump
