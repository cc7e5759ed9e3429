"""Experiment 2: receptive field growth with depth for stacks of 3x3 convs, analytic and empirical.

    python -m experiments.receptive_field

Three stacks of depth 1..12: stride 1 throughout; stride 2 in every layer up to the 3rd (early
downsampling); stride 2 in every 4th layer (ResNet-like). Analytic from the trace (rf += (k-1) *
jump), empirical from the non-zero support of one centre output pixel's input gradient. Writes
results/receptive_field.{md,csv,png}.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from experiments.results_io import plot_path, write_table  # noqa: E402
from resnet_jax import errors  # noqa: E402
from resnet_jax.nn.conv import Conv2D  # noqa: E402
from resnet_jax.nn.trace import empirical_receptive_field, trace  # noqa: E402

COMMAND = "python -m experiments.receptive_field"
MAX_DEPTH = 12
SCHEMES = {
    "stride 1": lambda i: 1,
    "stride 2 in layers 1-3": lambda i: 2 if i < 3 else 1,
    "stride 2 every 4th layer": lambda i: 2 if i % 4 == 3 else 1,
}


class ConvStack(nn.Module):
    """3x3 convs with the given strides, no nonlinearity (so every path carries gradient)."""

    strides: tuple

    @nn.compact
    def __call__(self, x):  # [N, H, W, C] -> [N, H', W', 4]
        for s in self.strides:
            x = Conv2D(4, 3, s, padding="SYMMETRIC")(x)
        return x


def main(argv):
    errors.no_arguments(argv)
    rows, curves = [], {}
    for scheme, stride_of in SCHEMES.items():
        strides = tuple(stride_of(i) for i in range(MAX_DEPTH))
        model = ConvStack(strides)
        jumps = 1
        for s in strides:
            jumps *= s
        size = 2 * (2 * MAX_DEPTH * jumps + 1) + 8  # comfortably larger than the deepest field
        shape = (1, size, size, 1)
        analytic = [r.receptive_field[0] for r in trace(model, shape)]
        empirical = []
        for depth in range(1, MAX_DEPTH + 1):
            sub = ConvStack(strides[:depth])
            variables = sub.init(jax.random.key(depth), jnp.zeros(shape))
            empirical.append(
                empirical_receptive_field(lambda x: sub.apply(variables, x), shape, samples=1)[0]
            )
        curves[scheme] = (analytic, empirical)
        for depth in range(MAX_DEPTH):
            rows.append(
                (
                    scheme,
                    depth + 1,
                    strides[depth],
                    analytic[depth],
                    empirical[depth],
                    "yes" if analytic[depth] == empirical[depth] else "NO",
                )
            )
    write_table(
        "receptive_field",
        ("stack", "depth", "stride of layer", "RF analytic", "RF empirical", "agree"),
        rows,
        command=COMMAND,
        notes="n stride-1 3x3 convs see 2n+1 pixels; a stride multiplies what every later layer "
        "adds.",
    )
    fig, ax = plt.subplots(figsize=(8.5, 4.2))
    depths = range(1, MAX_DEPTH + 1)
    for (scheme, (analytic, empirical)), color in zip(
        curves.items(), ["#4477aa", "#ee6677", "#228833"]
    ):
        ax.plot(depths, analytic, "-", color=color, label=f"{scheme}: analytic (trace)")
        ax.plot(
            depths,
            empirical,
            "o",
            color=color,
            mfc="none",
            label=f"{scheme}: empirical (gradient support)",
        )
    ax.set_xlabel("number of 3x3 conv layers")
    ax.set_ylabel("receptive field (pixels, log scale)")
    ax.set_yscale("log", base=2)
    # 16, not 2^4
    ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set_xticks(depths)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    ax.set_title(
        "Receptive field of one output pixel of a stack of 3x3 convs, by where the stride-2 layers "
        "are",
        fontsize=10,
        loc="left",
    )
    fig.tight_layout()
    fig.savefig(plot_path("receptive_field"), dpi=120, bbox_inches="tight")
    print(f"{sum(r[-1] == 'yes' for r in rows)}/{len(rows)} depths agree")


if __name__ == "__main__":
    errors.run_absl(main)  # no flags of its own: --help only helps
