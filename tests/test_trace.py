"""The per-layer trace: shapes, totals, padding shown, receptive fields (analytic = empirical),
warnings."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest
from test_errors import command
from tiny_run import REPO, write_tiny_npz

from resnet_jax.nn.conv import Conv2D
from resnet_jax.nn.models import get_model
from resnet_jax.nn.pool import MaxPool2D
from resnet_jax.nn.trace import empirical_receptive_field, feature_map_warnings, totals, trace


def test_resnet50_trace_shapes_params_and_macs():
    rows = trace(get_model("resnet50"), (1, 224, 224, 3))
    spatial = []
    for row in rows:
        if row.kind in ("conv", "max_pool") and row.out_shape[1] not in spatial:
            spatial.append(row.out_shape[1])
    assert [224, *spatial] == [224, 112, 56, 28, 14, 7]
    params, macs = totals(rows)
    assert params == 25_557_032  # every parameter of the model appears in exactly one row
    assert 4.0e9 < macs < 4.2e9  # "about 4.1 GMACs"
    assert rows[-1].receptive_field == (427, 427) and rows[-1].jump == (32, 32)


def test_trace_shows_the_padding_actually_applied():
    symmetric = {r.name: r.padding for r in trace(get_model("resnet18"), (1, 224, 224, 3))}
    same = {
        r.name: r.padding for r in trace(get_model("resnet18", padding="same"), (1, 224, 224, 3))
    }
    assert symmetric["stem_conv"] == ((3, 3), (3, 3)) and same["stem_conv"] == ((2, 3), (2, 3))
    assert symmetric["stage2_block0/conv1"] == ((1, 1), (1, 1)) and same["stage2_block0/conv1"] == (
        (0, 1),
        (0, 1),
    )


@pytest.mark.parametrize("padding,size", [("VALID", 32), ("SYMMETRIC", 32), ("SYMMETRIC", 8)])
def test_trace_flops_against_xla_cost_analysis(padding, size):
    """The trace counts every window tap (2 FLOPs per MAC); XLA counts only the taps on the image,
    so the two agree without padding and differ by exactly the padded taps with it (the trace
    module's docstring)."""
    conv = Conv2D(16, 3, 1, padding=padding, use_bias=False)
    x = jnp.zeros((1, size, size, 16))
    variables = conv.init(jax.random.PRNGKey(0), x)
    (row,) = trace(conv, x.shape)
    xla = jax.jit(conv.apply).lower(variables, x).cost_analysis()["flops"]
    valid_taps_per_axis = 3 * size - 2 if padding == "SYMMETRIC" else 3 * (size - 2)
    assert xla == 2 * 16 * 16 * valid_taps_per_axis**2
    assert (xla == 2 * row.macs) == (padding == "VALID")


class ConvStack(nn.Module):
    """n convs with the given kernels, strides and dilations, ReLU-free so gradients never
    vanish."""

    kernels: tuple
    strides: tuple
    dilations: tuple

    @nn.compact
    def __call__(self, x):
        for k, s, d in zip(self.kernels, self.strides, self.dilations):
            x = Conv2D(4, k, s, padding="SYMMETRIC", dilation=d)(x)
        return x


@pytest.mark.parametrize("n", [1, 2, 5, 10])
def test_stack_of_3x3_convs_has_receptive_field_2n_plus_1(n):
    rows = trace(ConvStack((3,) * n, (1,) * n, (1,) * n), (1, 48, 48, 2))
    assert [r.receptive_field[0] for r in rows] == [2 * i + 1 for i in range(1, n + 1)]


@pytest.mark.parametrize(
    "kernels,strides,dilations",
    [
        ((3,) * 10, (1,) * 10, (1,) * 10),
        ((3, 3, 3, 3), (2, 1, 2, 1), (1, 1, 1, 1)),
        ((5, 3, 3), (1, 2, 1), (1, 2, 3)),
        ((7, 1, 3), (2, 1, 2), (1, 1, 1)),
    ],
)
def test_analytic_receptive_field_equals_empirical(kernels, strides, dilations):
    model = ConvStack(kernels, strides, dilations)
    shape = (1, 64, 64, 2)
    variables = model.init(jax.random.key(0), jnp.zeros(shape))
    analytic = trace(model, shape)[-1].receptive_field
    empirical = empirical_receptive_field(lambda x: model.apply(variables, x), shape)
    assert empirical == analytic


def test_empirical_receptive_field_of_a_resnet_stem_and_pool():
    class Stem(nn.Module):
        @nn.compact
        def __call__(self, x):
            return MaxPool2D(3, 2, padding=1)(Conv2D(4, 7, 2, padding=3)(x))

    model, shape = Stem(), (1, 64, 64, 3)
    variables = model.init(jax.random.key(0), jnp.zeros(shape))
    assert trace(model, shape)[-1].receptive_field == (11, 11)
    assert empirical_receptive_field(lambda x: model.apply(variables, x), shape) == (11, 11)


def test_warnings_for_collapsed_and_unshrunk_maps():
    with pytest.warns(UserWarning, match="1x1 before the last stage"):
        trace(get_model("resnet18"), (1, 16, 16, 3))
    with pytest.warns(UserWarning, match="never shrinks"):
        trace(get_model("cifar_resnet8", stage_strides=(1, 1, 1)), (1, 16, 16, 3))
    assert feature_map_warnings(trace(get_model("cifar_resnet20"), (1, 32, 32, 3)), (32, 32)) == []


def test_summary_command_prints_totals_from_a_model_name_or_a_config(tmp_path):
    out = command("resnet_jax.summary", "--model", "cifar_resnet20")
    assert out.returncode == 0 and "stage3_block2/conv2" in out.stdout and "269,722" in out.stdout
    # --config: the trainer's model from the config and its overrides, on the data set's shape and
    # classes.
    npz = write_tiny_npz(tmp_path / "tiny.npz")  # 8x8 images of 4 classes
    out = command(
        "resnet_jax.summary",
        f"--config={REPO}/configs/default.py",
        "--config.model.depth=110",
        "--config.data.name=npz",
        f"--config.data.path={npz}",
        "--config.data.eval_fraction=0.25",
    )
    by_name = command(
        "resnet_jax.summary", "--model=cifar_resnet110", "--input=8", "--set=num_classes=4"
    )
    assert out.returncode == 0 and by_name.returncode == 0, out.stderr[-500:]
    assert (
        "8x8x3" in out.stdout and out.stdout.splitlines()[-2:] == by_name.stdout.splitlines()[-2:]
    )
