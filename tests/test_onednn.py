"""oneDNN convolutions (conv2d backend=onednn.conv_backend) give XLA's numbers: forward against the
float64 reference, gradients against XLA's, whole ResNets' train steps, bfloat16 against float32 on
every block kind, and a clear error or a fallback where oneDNN cannot run."""

import functools
import json
import logging
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_conv import padding_forms, reference_conv2d
from tiny_run import load_config

from resnet_jax import build, runtime
from resnet_jax.cpu import conv_choice, machine, onednn
from resnet_jax.nn import blocks
from resnet_jax.nn.conv import Conv2D, conv2d
from resnet_jax.nn.models import get_model
from resnet_jax.nn.norm import BatchNorm
from resnet_jax.nn.shapes import ShapeError, output_size, resolve_padding
from resnet_jax.training import train

BACKENDS = {"xla": None, "onednn": onednn.conv_backend}

needs_onednn = pytest.mark.skipif(
    not onednn.available(), reason=f"oneDNN unavailable: {onednn.why_unavailable()}"
)
needs_bf16_units = pytest.mark.skipif(
    not (onednn.available() and machine.bf16_units()),
    reason="oneDNN bfloat16 needs a CPU with AVX512-BF16 or AMX",
)
# strided 1x1 on sizes the stride does not divide: subsampled, then stride 1
GRADIENT_CASES = [
    ((4, 8, 8, 16), 3, 1, 1, 1),
    ((4, 8, 8, 16), 3, 2, 1, 1),  # stride 2 on an even input: oneDNN's high padding is trimmed
    ((2, 16, 16, 8), 1, 2, 0, 1),  # 1x1 stride-2 projection: the last row and column are never read
    (
        (2, 7, 9, 8),
        1,
        3,
        0,
        1,
    ),
    ((2, 32, 32, 3), 7, 2, 3, 1),  # the ImageNet stem
    ((2, 9, 11, 4), 3, 1, (2, 0), 2),  # dilation and one-sided padding
    ((2, 10, 10, 4), 3, 2, "SAME", 1),  # XLA's asymmetric (0, 1)
]


def relative_error(got, expected) -> float:
    """|got - expected| / |expected| over a whole pytree (L2)."""
    return float(
        optax.tree.norm(jax.tree.map(lambda a, b: a.astype(jnp.float32) - b, got, expected))
        / optax.tree.norm(expected)
    )


@needs_onednn
@settings(max_examples=40, deadline=None)
@given(
    h=st.integers(5, 12),
    w=st.integers(5, 12),
    kernel=st.integers(1, 4),
    stride=st.integers(1, 3),
    dilation=st.integers(1, 2),
    padding=padding_forms,
    flip=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_onednn_conv2d_matches_numpy_reference(h, w, kernel, stride, dilation, padding, flip, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, h, w, 3)).astype(np.float32)
    weights = rng.standard_normal((kernel, kernel, 3, 5)).astype(np.float32)
    try:
        expected_hw = [output_size(s, kernel, stride, padding, dilation) for s in (h, w)]
    except ShapeError:
        return  # conv2d raises before either implementation runs (test_conv covers it)
    y = jax.jit(
        functools.partial(
            conv2d,
            stride=stride,
            padding=padding,
            dilation=dilation,
            flip=flip,
            backend=onednn.conv_backend,
        )
    )(x, weights)
    pads = [resolve_padding(padding, s, kernel, stride, dilation) for s in (h, w)]
    assert list(y.shape[1:3]) == expected_hw
    np.testing.assert_allclose(
        np.asarray(y),
        reference_conv2d(x, weights, stride, pads, dilation, 1, flip),
        rtol=1e-4,
        atol=1e-4,
    )


def conv_inputs(rng, shape, kernel):
    """Random float32 images `shape` [N, H, W, C] and weights [kernel, kernel, C, 6]."""
    x = jnp.asarray(rng.standard_normal(shape), jnp.float32)
    return x, jnp.asarray(rng.standard_normal((kernel, kernel, shape[-1], 6)), jnp.float32)


@needs_onednn
@pytest.mark.parametrize("shape,kernel,stride,padding,dilation", GRADIENT_CASES)
def test_onednn_gradients_equal_xla(shape, kernel, stride, padding, dilation):
    rng = np.random.default_rng(0)
    x, w = conv_inputs(rng, shape, kernel)

    def loss(x, w, impl):
        y = conv2d(x, w, stride=stride, padding=padding, dilation=dilation, backend=BACKENDS[impl])
        return jnp.sum(jnp.sin(y))  # a non-trivial output gradient

    grads = {
        impl: jax.jit(jax.value_and_grad(loss, argnums=(0, 1)), static_argnums=2)(x, w, impl)
        for impl in ("xla", "onednn")
    }
    for got, expected in zip(jax.tree.leaves(grads["onednn"]), jax.tree.leaves(grads["xla"])):
        np.testing.assert_allclose(got, expected, rtol=2e-4, atol=2e-4)


def train_step_results(name, impl, image_size, **overrides):
    """Loss, gradients and BatchNorm updates of one train step from the same initialisation."""
    model = get_model(name, num_classes=10, conv_backend=BACKENDS[impl], **overrides)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((8, image_size, image_size, 3)), jnp.float32)
    labels = jnp.asarray(rng.integers(0, 10, 8), jnp.int32)
    variables = get_model(name, num_classes=10, **overrides).init(jax.random.key(0), x[:1])

    def loss_fn(params):
        logits, updates = model.apply(
            {"params": params, "batch_stats": variables["batch_stats"]},
            x,
            train=True,
            mutable=["batch_stats"],
        )
        return train.cross_entropy(logits, labels).mean(), updates

    return jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(variables["params"])


@needs_onednn
# bottlenecks (slow:
@pytest.mark.parametrize(
    "name,image_size,overrides",
    [
        ("cifar_resnet8", 16, {}),
        # 7x7 stem, max-pool, 1x1 stride-2 projections (slow: each convolution is in GRADIENT_CASES)
        pytest.param("resnet18", 32, {"width_multiplier": 0.125}, marks=pytest.mark.slow),
        pytest.param("resnet50", 32, {"width_multiplier": 0.0625}, marks=pytest.mark.slow),
        # their convolutions are checked block by block in the default run)
    ],
)
def test_onednn_train_step_equals_xla(name, image_size, overrides):
    (loss_x, stats_x), grads_x = train_step_results(name, "xla", image_size, **overrides)
    (loss_o, stats_o), grads_o = train_step_results(name, "onednn", image_size, **overrides)
    np.testing.assert_allclose(loss_o, loss_x, rtol=1e-5)
    # BatchNorm over a batch of 8 amplifies float32 rounding; compare the whole gradient as one
    # vector.
    difference = optax.tree.norm(jax.tree.map(jnp.subtract, grads_o, grads_x))
    assert float(difference / optax.tree.norm(grads_x)) < 1e-3
    for got, expected in zip(jax.tree.leaves(stats_o), jax.tree.leaves(stats_x)):
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


@needs_bf16_units
@pytest.mark.parametrize("wgrad", ["bf16", "f32"])
@pytest.mark.parametrize("shape,kernel,stride,padding,dilation", GRADIENT_CASES)
def test_onednn_bfloat16_values_and_gradients_match_float32(
    shape, kernel, stride, padding, dilation, wgrad, monkeypatch
):
    monkeypatch.setenv("RESNET_JAX_BF16_WGRAD", wgrad)
    rng = np.random.default_rng(0)
    x, w = conv_inputs(rng, shape, kernel)
    out_shape = jax.eval_shape(
        functools.partial(conv2d, stride=stride, padding=padding, dilation=dilation), x, w
    )
    r = jnp.asarray(rng.standard_normal(out_shape.shape), jnp.float32)

    def loss(x, w, impl, dtype):  # linear in y, so the gradients' errors are the convolutions' own
        y = conv2d(
            x.astype(dtype),
            w.astype(dtype),
            stride=stride,
            padding=padding,
            dilation=dilation,
            backend=BACKENDS[impl],
        )
        return jnp.sum(y.astype(jnp.float32) * r), y

    step = jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True), static_argnums=(2, 3))
    (_, y32), grads32 = step(x, w, "xla", jnp.float32)
    (_, y16), grads16 = step(x, w, "onednn", jnp.bfloat16)
    hlo = step.lower(x, w, "onednn", jnp.bfloat16).as_text()
    assert "@RjOnednnConvForwardBf16(" in hlo and "@RjOnednnConvBackwardDataBf16(" in hlo
    # The weight gradient from the bf16 operands (the default) or from them widened to float32;
    # float32 out.
    assert f"@RjOnednnConvBackwardWeights{'Bf16' if wgrad == 'bf16' else ''}(" in hlo
    assert y16.dtype == jnp.bfloat16 and [g.dtype for g in grads16] == [jnp.float32] * 2
    # bfloat16 keeps 8 significant bits (relative rounding <= 2^-9 per input); sums of many products
    # average it
    assert relative_error(y16, y32) < 1e-2
    for got, expected in zip(grads16, grads32):
        assert relative_error(got, expected) < 1e-2


def block_step(block_cls, shortcut, impl, dtype):
    """Output, gradients (of the params and the input) and BatchNorm updates of one block in
    training mode."""
    features = 16 if block_cls.expansion == 1 else 8  # shortcut 'A' may only widen
    conv = functools.partial(Conv2D, padding="symmetric", dtype=dtype, backend=BACKENDS[impl])
    norm = functools.partial(BatchNorm, use_running_average=False, dtype=dtype)
    block = block_cls(features=features, stride=2, shortcut=shortcut, conv=conv, norm=norm)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((16, 16, 16, 8)), jnp.float32)
    variables = block_cls(
        features=features,
        stride=2,
        shortcut=shortcut,
        conv=functools.partial(Conv2D, padding="symmetric"),
        norm=functools.partial(BatchNorm, use_running_average=False),
    ).init(jax.random.key(0), x)  # float32 parameters and statistics, the same for every dtype
    r = jnp.asarray(rng.standard_normal((16, 8, 8, features * block_cls.expansion)), jnp.float32)

    def loss(params, x):
        y, updates = block.apply(
            {"params": params, "batch_stats": variables["batch_stats"]},
            x.astype(dtype),
            mutable=["batch_stats"],
        )
        return jnp.sum(y.astype(jnp.float32) * r), (y, updates)

    step = jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))
    (_, (y, updates)), grads = step(variables["params"], x)
    return y, grads, updates, step.lower(variables["params"], x).as_text()


@needs_bf16_units
@pytest.mark.parametrize(
    "block_cls,shortcut",
    [
        (blocks.BasicBlock, "A"),
        (blocks.BasicBlock, "B"),
        (blocks.BottleneckBlock, "B"),
        (blocks.PreActBasicBlock, "A"),
        (blocks.PreActBasicBlock, "B"),
        (blocks.PreActBottleneckBlock, "B"),
    ],
)
def test_onednn_bfloat16_blocks_match_float32_as_closely_as_xla_bfloat16(block_cls, shortcut):
    y32, grads32, stats32, _ = block_step(block_cls, shortcut, "xla", jnp.float32)
    y_xla, grads_xla, stats_xla, _ = block_step(block_cls, shortcut, "xla", jnp.bfloat16)
    y16, grads16, stats16, hlo = block_step(block_cls, shortcut, "onednn", jnp.bfloat16)
    convs = hlo.count("RjOnednnConvForwardBf16")
    # every conv, none left to XLA
    assert convs == (2 if block_cls.expansion == 1 else 3) + (shortcut == "B")
    assert hlo.count("@RjOnednnConvBackwardWeightsBf16(") == convs and "convolution(" not in hlo
    # params and input stay f32
    assert {g.dtype for g in jax.tree.leaves(grads16)} == {jnp.dtype(jnp.float32)}
    assert {s.dtype for s in jax.tree.leaves(stats16)} == {jnp.dtype(jnp.float32)}
    assert relative_error(y16, y32) < 1e-2 and relative_error(stats16, stats32) < 1e-3
    # BatchNorm's backward pass (batch statistics of 8x8 maps) amplifies bf16 rounding to ~5% in
    # XLA's bf16 too: oneDNN's may differ from float32 by about as much as XLA's does, not more.
    for got, xla_bf16, expected in zip(grads16, grads_xla, grads32):
        assert relative_error(got, expected) < 1.5 * relative_error(xla_bf16, expected) + 0.01


def test_bf16_units_are_read_from_the_cpu_flags(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16\n\n")
    assert machine.bf16_units.__wrapped__(str(cpuinfo))
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx2 amx_tile amx_bf16\n")
    assert machine.bf16_units.__wrapped__(str(cpuinfo))
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f\n")
    assert not machine.bf16_units.__wrapped__(str(cpuinfo))
    assert not machine.bf16_units.__wrapped__(str(tmp_path / "absent"))


def test_bfloat16_without_bf16_units_and_grouped_convolutions_stay_with_xla(monkeypatch):
    x, w = jnp.ones((1, 6, 6, 4), jnp.bfloat16), jnp.ones((3, 3, 4, 4), jnp.bfloat16)
    assert onednn.supports(x, w, groups=1) == machine.bf16_units()
    monkeypatch.setattr(machine, "bf16_units", lambda: False)
    assert not onednn.supports(x, w, groups=1)
    assert not onednn.supports(x, w.astype(jnp.float32), groups=1)  # mixed dtypes
    assert not onednn.supports(x.astype(jnp.float32), w.astype(jnp.float32), groups=2)
    hlo = (
        jax.jit(functools.partial(conv2d, padding=1, groups=2, backend=onednn.conv_backend))
        .lower(x.astype(jnp.float32), w[:, :, :2].astype(jnp.float32))
        .as_text()
    )
    assert "custom_call" not in hlo and "convolution" in hlo


def test_unavailable_onednn_is_a_clear_error_and_auto_falls_back(monkeypatch):
    monkeypatch.setattr(
        onednn, "_load", lambda: onednn.OneDnnUnavailable("the wheel is not installed")
    )
    with pytest.raises(onednn.OneDnnUnavailable, match="the wheel is not installed. Use XLA's"):
        conv2d(
            jnp.ones((1, 4, 4, 2)), jnp.ones((3, 3, 2, 2)), padding=1, backend=onednn.conv_backend
        )
    config = load_config()
    config.train.conv_impl = "onednn"
    with pytest.raises(
        ValueError, match=r"config.train.conv_impl='onednn': .*the wheel is not installed"
    ):
        build.validate_config(config, device_count=1, process_count=1)
    assert runtime.conv_impl_for("auto", parallel_mode="single", dtype="float32") == "xla"
    assert runtime.conv_impl_for("fastest", parallel_mode="single", dtype="float32") == "xla"
    assert runtime.conv_backend("auto") is None  # XLA's
    with pytest.raises(ValueError, match="conv_impl='cudnn': use one of"):
        runtime.conv_backend("cudnn")


@needs_onednn
def test_auto_picks_onednn_with_the_table_for_cpu_runs_outside_sharding():
    assert runtime.conv_impl_for("auto", parallel_mode="single", dtype="float32") == "table"
    assert runtime.conv_impl_for("auto", parallel_mode="pmap", dtype="float32") == "table"
    assert runtime.conv_impl_for("auto", parallel_mode="sharding", dtype="float32") == "xla"
    # oneDNN's bf16 kernels pay only with bf16 units
    bf16 = "table" if machine.bf16_units() else "xla"
    assert runtime.conv_impl_for("auto", parallel_mode="single", dtype="bfloat16") == bf16
    assert runtime.conv_impl_for("xla", parallel_mode="single", dtype="float32") == "xla"
    assert runtime.conv_impl_for("fastest", parallel_mode="single", dtype="float32") == "fastest"
    assert runtime.conv_impl_for("fastest", parallel_mode="sharding", dtype="float32") == "xla"
    assert runtime.conv_backend("fastest") is conv_choice.fastest


@needs_onednn
def test_fastest_sends_each_shape_to_the_faster_and_measures_it_once_per_machine(
    tmp_path, monkeypatch, caplog
):
    """conv_impl='fastest': XLA where it took under XLA_MARGIN of oneDNN's time, else oneDNN; 1x1
    kernels and a batch of one are not measured; the times persist in the cache folder for the next
    process, unless other processes loaded the cores while they were taken."""
    monkeypatch.setenv("RESNET_JAX_CACHE", str(tmp_path))
    conv_choice._times.cache_clear()
    measured = []

    # XLA faster on 8 channels only
    def fake_measure(x_shape, kernel_shape, dtype, stride, padding, dilation):
        measured.append((x_shape, kernel_shape))
        times = {"xla": 1.0, "onednn": 2.0} if x_shape[-1] == 8 else {"xla": 0.95, "onednn": 1.0}
        # 7 rows: timed on a loaded machine
        return {
            **times,
            "others": 1.5 if x_shape[1] == 7 else 0.0,
        }

    monkeypatch.setattr(conv_choice, "measure", fake_measure)

    def calls(x_shape, kernel_shape, **kw):
        step = jax.jit(
            jax.grad(
                lambda x, k: conv2d(
                    x, k, padding=kernel_shape[0] // 2, backend=conv_choice.fastest, **kw
                ).sum(),
                argnums=(0, 1),
            )
        )
        hlo = step.lower(jnp.ones(x_shape), jnp.ones(kernel_shape)).as_text()
        return "custom_call" in hlo, "convolution" in hlo

    assert calls((2, 6, 6, 8), (3, 3, 8, 4)) == (False, True)  # XLA at twice the speed
    assert calls((2, 6, 6, 4), (3, 3, 4, 4)) == (True, False)  # XLA 5% faster: a tie, oneDNN
    assert calls((2, 6, 6, 8), (1, 1, 8, 4), stride=2) == (True, False)  # 1x1: oneDNN, not measured
    # a batch of one: oneDNN, not measured
    assert calls((1, 6, 6, 8), (3, 3, 8, 4)) == (
        True,
        False,
    )
    assert calls((2, 6, 6, 8), (3, 3, 8, 4)) == (False, True)  # known: not measured again
    assert measured == [((2, 6, 6, 8), (3, 3, 8, 4)), ((2, 6, 6, 4), (3, 3, 4, 4))]
    conv_choice._times.cache_clear()  # a new process reads the file
    assert calls((2, 6, 6, 4), (3, 3, 4, 4)) == (True, False) and len(measured) == 2
    assert conv_choice.cache_path().parent == tmp_path
    # Timed while other processes loaded the cores: used now, measured again by the next process.
    with caplog.at_level(logging.WARNING):
        assert calls((2, 7, 7, 8), (3, 3, 8, 4)) == (False, True) and len(measured) == 3
    assert "other processes kept 1.5 cores busy" in caplog.text
    assert calls((2, 7, 7, 8), (3, 3, 8, 4)) == (False, True) and len(measured) == 3
    conv_choice._times.cache_clear()
    assert calls((2, 7, 7, 8), (3, 3, 8, 4)) == (False, True) and len(measured) == 4
    assert len(json.loads(conv_choice.cache_path().read_text())) == 2


@needs_onednn
def test_fastest_measures_both_implementations_and_computes_xlas_numbers(tmp_path, monkeypatch):
    monkeypatch.setenv("RESNET_JAX_CACHE", str(tmp_path))
    conv_choice._times.cache_clear()
    times = conv_choice.measure(
        (2, 8, 8, 4), (3, 3, 4, 6), "float32", (2, 2), ((1, 1), (1, 1)), (1, 1)
    )
    assert set(times) == {"xla", "onednn", "others"} and all(
        0 < times[impl] < 10 for impl in ("xla", "onednn")
    )
    assert times["others"] >= 0  # cores other processes used meanwhile (pytest's other worker, say)
    rng = np.random.default_rng(0)
    x, w = (
        rng.standard_normal((3, 9, 9, 4)).astype(np.float32),
        rng.standard_normal((3, 3, 4, 6)).astype(np.float32),
    )

    def loss(backend):
        return lambda x, w: jnp.sum(jnp.sin(conv2d(x, w, padding=1, backend=backend)))

    got = jax.jit(jax.value_and_grad(loss(conv_choice.fastest), argnums=(0, 1)))(x, w)
    expected = jax.jit(jax.value_and_grad(loss(None), argnums=(0, 1)))(x, w)
    assert relative_error(got, expected) < 1e-5
    # the measured shapes are known to this process (and cached when it was quiet)
    assert conv_choice._times()


ROUTE_SCRIPT = """
import json
import jax, jax.numpy as jnp
from resnet_jax.cpu import onednn
assert onednn.available(), onednn.why_unavailable()
x = jax.random.normal(jax.random.key(0), (2, 9, 9, 8))
kernel = jax.random.normal(jax.random.key(1), (3, 3, 8, 16)) * 0.1
conv = lambda x, k: onednn.conv(x, k, stride=(2, 2), padding=((1, 1), (1, 1)), dilation=(1, 1))
y, pull = jax.vjp(jax.jit(conv), x, kernel)
dx, dk = pull(jnp.ones_like(y))
print(onednn.route_taken())
print(json.dumps([a.tolist() for a in (y, dx, dk)]))
"""


@needs_onednn
def test_jaxlibs_onednn_and_the_wheels_give_the_same_convolution(tmp_path):
    """Both routes (jaxlib's oneDNN on XLA's thread pool, the default, and the onednn-cpu-gomp
    wheel's) build, load and agree with each other and with XLA's convolution; a wrong route is
    refused."""
    results = {}
    for route in ("jaxlib", "wheel"):
        env = {**os.environ, "RESNET_JAX_ONEDNN": route, "RESNET_JAX_CACHE": str(tmp_path / route)}
        run = subprocess.run(
            [sys.executable, "-c", ROUTE_SCRIPT],
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert run.returncode == 0, run.stderr[-2000:]
        assert run.stdout.splitlines()[-2] == route
        results[route] = [np.asarray(a) for a in json.loads(run.stdout.splitlines()[-1])]
    x = jax.random.normal(jax.random.key(0), (2, 9, 9, 8))
    kernel = jax.random.normal(jax.random.key(1), (3, 3, 8, 16)) * 0.1
    xla = functools.partial(conv2d, stride=2, padding=1)
    y, pull = jax.vjp(xla, x, kernel)
    expected = [y, *pull(jnp.ones_like(y))]
    for route, arrays in results.items():
        for got, want in zip(arrays, expected, strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, err_msg=route)
    env = {**os.environ, "RESNET_JAX_ONEDNN": "mkl"}
    code = "from resnet_jax.cpu import onednn; print(onednn.why_unavailable())"
    run = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert "RESNET_JAX_ONEDNN='mkl': use 'jaxlib' or 'wheel'" in run.stdout
