"""train.conv_impl='auto' chooses each convolution's implementation from the shipped table
(resnet_jax/cpu/conv_table.py): the same answer in every process and on every host, no timing at
start-up, and a shape nobody measured still runs (on oneDNN) and computes what XLA computes."""

import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tiny_run import REPO

from resnet_jax import runtime
from resnet_jax.cpu import conv_choice, conv_table, machine, onednn
from resnet_jax.nn.conv import conv2d, xla_conv

needs_onednn = pytest.mark.skipif(
    not onednn.available(), reason=f"oneDNN unavailable: {onednn.why_unavailable()}"
)
ARGS = dict(stride=(1, 1), padding=((1, 1), (1, 1)), dilation=(1, 1))
# Every choice 'auto' makes for ResNet-20 (batch 128) and ResNet-50 (batch 8) in both dtypes.
CHOICES = (
    "import json\n"
    "from resnet_jax.cpu import conv_table, machine\n"
    "out = {}\n"
    "for name, batch in [('cifar_resnet20', 128), ('resnet50', 8)]:\n"
    "    for dtype in ['float32', 'bfloat16']:\n"
    "        for g in conv_table.model_geometries(name, batch, dtype):\n"
    "            args = {k: g[k] for k in ('stride', 'padding', 'dilation')}\n"
    "            shapes = (g['x_shape'], g['kernel_shape'], g['dtype'])\n"
    "            key = conv_table.geometry_key(*shapes, **args)\n"
    "            out[key] = conv_table.choose(*shapes, isa=machine.isa_class(), **args)\n"
    "print(json.dumps(out, sort_keys=True))\n"
)


def test_the_shipped_table_is_consistent_with_its_own_times():
    table = conv_table.load()
    assert set(table["choices"]) <= set(machine.ISA_CLASSES) | {"baseline"}
    assert set(table["choices"]) == set(table["measured"])
    for isa, entries in table["choices"].items():
        assert entries, isa
        assert "python -m resnet_jax.cpu.conv_table" in table["measured"][isa]["command"]
        for key, entry in entries.items():
            (h, w, c), (kh, kw, kc, k), dtype, stride, padding, dilation = json.loads(key)
            assert (kh, kw) != (1, 1) and kc == c and dtype in ("float32", "bfloat16")
            faster = entry["xla_ms"] < conv_choice.XLA_MARGIN * entry["onednn_ms"]
            assert entry["choice"] == ("xla" if faster else "onednn"), key


def test_choose_reads_the_table_and_gives_onednn_to_1x1_and_to_shapes_it_lacks(monkeypatch):
    listed = conv_table.geometry_key((8, 14, 14, 512), (3, 3, 512, 512), "float32", **ARGS)
    table = {"choices": {"avx2": {listed: {"choice": "xla"}}}, "measured": {}}
    monkeypatch.setattr(conv_table, "load", lambda: table)
    # the batch is not part of the key: 64 images take what 8 were measured with
    assert conv_table.choose(
        (64, 14, 14, 512), (3, 3, 512, 512), "float32", isa="avx2", **ARGS
    ) == ("xla")
    assert conv_table.choose(
        (8, 14, 14, 512), (3, 3, 512, 512), "float32", isa="amx_bf16", **ARGS
    ) == ("onednn")
    assert conv_table.choose(
        (8, 14, 14, 512), (3, 3, 512, 512), "bfloat16", isa="avx2", **ARGS
    ) == ("onednn")
    one = dict(stride=(1, 1), padding=((0, 0), (0, 0)), dilation=(1, 1))
    assert conv_table.choose((8, 14, 14, 512), (1, 1, 512, 512), "float32", isa="avx2", **one) == (
        "onednn"
    )


def test_auto_measures_nothing_while_a_model_traces(monkeypatch):
    def no_timing(*args, **kwargs):
        raise AssertionError("'auto' timed a convolution")

    monkeypatch.setattr(conv_choice, "measure", no_timing)
    from resnet_jax.nn.models import get_model

    backend = runtime.conv_backend("auto")
    model = get_model("resnet50", conv_backend=backend)
    x = jax.ShapeDtypeStruct((8, 224, 224, 3), jnp.float32)
    variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x), x)
    assert jax.eval_shape(model.apply, variables, x).shape == (8, 1000)


def test_every_process_chooses_alike():
    """Two fresh processes and this one: the same choice for every convolution of ResNet-20 and
    ResNet-50 in both dtypes (nothing depends on a measurement or on the order of tracing)."""
    runs = [
        subprocess.run(
            [sys.executable, "-c", CHOICES], cwd=REPO, capture_output=True, text=True, timeout=300
        )
        for _ in range(2)
    ]
    assert all(r.returncode == 0 for r in runs), runs[0].stderr[-2000:]
    first, second = (json.loads(r.stdout.splitlines()[-1]) for r in runs)
    assert first == second and len(first) == 6 * 2 + 23 * 2
    scope = {}
    exec(CHOICES.replace("print(json.dumps(out, sort_keys=True))", ""), scope)
    assert scope["out"] == first


def test_hosts_of_a_run_take_process_0s_class(monkeypatch):
    """In a multi-host run every host uses the class process 0 sends (broadcast_one_to_all)."""
    from jax.experimental import multihost_utils

    sent = {}

    def broadcast(value):
        sent["value"] = int(value)
        return np.int32(machine.ISA_CLASSES.index("avx2"))  # what process 0 has

    monkeypatch.setattr(jax, "process_count", lambda: 2)
    monkeypatch.setattr(multihost_utils, "broadcast_one_to_all", broadcast)
    monkeypatch.setattr(machine, "isa_class", lambda: "amx_bf16")
    assert conv_table.agreed_isa_class() == "avx2"
    assert sent["value"] == machine.ISA_CLASSES.index("amx_bf16")


@needs_onednn
def test_a_shape_nobody_measured_runs_and_matches_xla():
    """A 5x5 convolution at stride 2 over an odd-sized map, in no table: oneDNN computes it, to
    XLA's numbers; and a shape the table gives to XLA is XLA's exactly."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((3, 11, 9, 6)), jnp.float32)
    kernel = jnp.asarray(rng.standard_normal((5, 5, 6, 10)) / 12, jnp.float32)
    backend = conv_table.backend(machine.isa_class())
    assert conv_table.choose(x.shape, kernel.shape, x.dtype, stride=(2, 2), padding=((2, 2),) * 2,
                             dilation=(1, 1), isa=machine.isa_class()) == "onednn"  # fmt: skip
    ours = jax.jit(lambda x, k: conv2d(x, k, stride=2, padding=2, backend=backend))(x, kernel)
    want = conv2d(x, kernel, stride=2, padding=2)
    np.testing.assert_allclose(ours, want, rtol=1e-4, atol=1e-4)
    isa = "amx_bf16"
    entries = conv_table.load()["choices"].get(isa, {})
    to_xla = [json.loads(key) for key, e in entries.items() if e["choice"] == "xla"]
    if not to_xla:
        pytest.skip(f"the table sends no {isa} shape to XLA")
    (h, w, c), kshape, dtype, stride, padding, dilation = to_xla[0]
    x = jnp.asarray(rng.standard_normal((1, h, w, c)), dtype)
    kernel = jnp.asarray(rng.standard_normal(kshape) / 30, dtype)
    args = dict(stride=tuple(stride), padding=[tuple(p) for p in padding], dilation=tuple(dilation))
    got = conv_table.tabled(x, kernel, groups=1, isa=isa, **args)
    np.testing.assert_array_equal(got, xla_conv(x, kernel, groups=1, **args))
