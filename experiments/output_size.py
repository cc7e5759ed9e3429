"""Experiment 3: output size across kernel, stride and padding, checked against real conv outputs.

    python -m experiments.output_size

For inputs of 7, 32 and 224 pixels, every kernel in {1, 3, 5, 7}, stride in {1, 2, 3} and padding in
{0, 1, 2, 3, 'SAME', 'VALID'}: the formula floor((n + 2p - k) / s) + 1 from shapes.output_size, and
the spatial size of an actual conv2d output (computed by XLA). Writes
results/output_size.{md,csv,png}.
"""

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from experiments.results_io import plot_path, write_table  # noqa: E402
from resnet_jax import errors  # noqa: E402
from resnet_jax.nn.conv import conv2d  # noqa: E402
from resnet_jax.nn.shapes import ShapeError, output_size  # noqa: E402

COMMAND = "python -m experiments.output_size"
SIZES, KERNELS, STRIDES, PADDINGS = (
    (7, 32, 224),
    (1, 3, 5, 7),
    (1, 2, 3),
    (0, 1, 2, 3, "SAME", "VALID"),
)


def main(argv):
    errors.no_arguments(argv)
    rows, mismatches = [], 0
    for n in SIZES:
        x = jnp.ones((1, n, n, 1))
        for k in KERNELS:
            kernel = jnp.ones((k, k, 1, 1))
            for s in STRIDES:
                for p in PADDINGS:
                    try:
                        formula = output_size(n, k, s, p)
                    except ShapeError:
                        formula = "error (empty)"
                    try:
                        actual = jax.eval_shape(
                            lambda a, b: conv2d(a, b, stride=s, padding=p), x, kernel
                        ).shape[1]
                    except ShapeError:
                        actual = "error (empty)"
                    mismatches += formula != actual
                    rows.append((n, k, s, p, formula, actual, "yes" if formula == actual else "NO"))
    write_table(
        "output_size",
        ("input", "kernel", "stride", "padding", "formula", "conv2d output", "agree"),
        rows,
        command=COMMAND,
        notes=f"{len(rows) - mismatches}/{len(rows)} configurations agree. "
        "'SAME' gives ceil(n / s) whatever the kernel; p = (k-1)/2 keeps n at stride 1.",
    )
    grids = [
        np.array(
            [
                [
                    output_size(32, k, s, p) if isinstance(p, str) or 32 + 2 * p >= k else 0
                    for p in PADDINGS
                ]
                for k in KERNELS
            ]
        )
        for s in STRIDES
    ]
    # one colour scale for all panels
    low, high = (
        min(g.min() for g in grids),
        max(g.max() for g in grids),
    )
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6), layout="constrained")
    for ax, s, grid in zip(axes, STRIDES, grids):
        image = ax.imshow(grid, cmap="viridis", vmin=low, vmax=high)
        for (i, j), v in np.ndenumerate(grid):  # dark text on the light end of the colour map
            ax.text(
                j,
                i,
                v,
                ha="center",
                va="center",
                fontsize=8,
                color="black" if v > low + 0.6 * (high - low) else "white",
            )
        ax.set_xticks(range(len(PADDINGS)), [str(p) for p in PADDINGS], fontsize=8)
        ax.set_yticks(range(len(KERNELS)), [f"{k}x{k}" for k in KERNELS], fontsize=8)
        ax.set_title(f"stride {s}", fontsize=9)
    axes[0].set_ylabel("kernel size")
    fig.supxlabel("padding (pixels on each side, or XLA's 'SAME' / 'VALID')", fontsize=10)
    fig.suptitle(
        "Output size of a conv on a 32x32 input, by kernel, stride and padding (each cell checked "
        "against "
        "conv2d)\npadding p: floor((32 + 2p - k) / s) + 1;  SAME: ceil(32 / s);  VALID: p = 0",
        fontsize=10,
    )
    fig.colorbar(image, ax=axes, label="output size (pixels)", shrink=0.8)
    fig.savefig(plot_path("output_size"), dpi=120, bbox_inches="tight")
    print(f"{len(rows) - mismatches}/{len(rows)} agree")


if __name__ == "__main__":
    errors.run_absl(main)  # no flags of its own: --help only helps
