"""Experiment 1: parameters of a fully connected layer on a 224x224x3 image against a 3x3 conv of
64 filters.

    python -m experiments.fc_vs_conv

Counts come from the project's own modules (nn.Dense on the flattened image,
resnet_jax.conv.Conv2D), by initialising them abstractly; nothing is hard-coded. Writes
results/fc_vs_conv.{md,csv,png}.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from experiments.results_io import plot_path, write_table  # noqa: E402
from resnet_jax import errors  # noqa: E402
from resnet_jax.nn.conv import Conv2D  # noqa: E402

COMMAND = "python -m experiments.fc_vs_conv"


def count(module: nn.Module, input_shape) -> int:
    shapes = jax.eval_shape(lambda: module.init(jax.random.key(0), jnp.zeros(input_shape)))
    return sum(leaf.size for leaf in jax.tree.leaves(shapes))


def main(argv):
    errors.no_arguments(argv)
    h = w = 224
    inputs = h * w * 3  # 150,528
    layers = [
        ("fully connected, 1000 units", nn.Dense(1000), (1, inputs)),
        ("3x3 conv, 64 filters (+bias)", Conv2D(64, 3, padding=1, use_bias=True), (1, h, w, 3)),
        ("3x3 conv, 64 filters (no bias)", Conv2D(64, 3, padding=1), (1, h, w, 3)),
        ("7x7 conv, 64 filters (ResNet stem)", Conv2D(64, 7, 2, padding=3), (1, h, w, 3)),
    ]
    rows = []
    fc = count(*layers[0][1:])
    for name, module, shape in layers:
        params = count(module, shape)
        out = jax.eval_shape(
            lambda: module.apply(module.init(jax.random.key(0), jnp.zeros(shape)), jnp.zeros(shape))
        ).shape
        rows.append(
            (
                name,
                "x".join(map(str, shape[1:])),
                "x".join(map(str, out[1:])),
                f"{params:,}",
                f"{fc / params:,.0f}x",
            )
        )
    write_table(
        "fc_vs_conv",
        ("layer", "input", "output", "parameters", "FC / this"),
        rows,
        command=COMMAND,
        notes=f"A dense layer sees all {inputs:,} inputs with its own weight per input and unit; a "
        "conv "
        f"shares one small kernel across every position, whatever the image size.",
    )
    fig, ax = plt.subplots(figsize=(8, 3.4))
    counts = [int(r[3].replace(",", "")) for r in rows][::-1]  # the first row at the top
    ax.barh([r[0] for r in rows][::-1], counts, color="#4477aa")
    ax.set_xscale("log")
    ax.set_xlim(1e2, 30 * max(counts))  # room for the count printed after each bar
    ax.set_xlabel("trainable parameters (log scale)")
    ax.set_ylabel("layer")
    ax.set_title(
        "Parameters of one layer on a 224x224x3 image: fully connected vs convolution",
        fontsize=10,
        loc="left",
        x=-0.45,
    )
    for i, (r, n) in enumerate(zip(rows[::-1], counts)):
        ax.text(
            n, i, f" {r[3]} ({r[4]} fewer)" if r[4] != "1x" else f" {r[3]}", va="center", fontsize=8
        )
    fig.tight_layout()
    fig.savefig(plot_path("fc_vs_conv"), dpi=120, bbox_inches="tight")
    for row in rows:
        print(" | ".join(row))


if __name__ == "__main__":
    errors.run_absl(main)  # no flags of its own: --help only helps
