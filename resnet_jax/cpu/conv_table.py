"""Which of XLA and oneDNN computes each convolution under train.conv_impl='auto': a table measured
on the CPU kinds at hand and shipped with the package (conv_table.json), never timed at start-up.

    python -m resnet_jax.cpu.conv_table --models=cifar_resnet20:128,resnet50:8 \
        --dtypes=float32,bfloat16 --rounds=5      # measures this CPU's kind, rewrites its entries

The table is keyed by the CPU's instruction-set class (`machine.isa_class`: amx_bf16, avx512_bf16,
avx512f, avx2) and by a convolution's geometry per image (H, W, C, KH, KW, K, stride, padding,
dilation, dtype): the batch is left out, so what was measured at batch 128 also serves batch 64. A
shape goes to XLA only where the table says so: XLA took under conv_choice.XLA_MARGIN of oneDNN's
time in the median of `--rounds` alternating measurements (forward and both gradients, best of
conv_choice.CALLS calls each, on a quiet machine). Everything else goes to oneDNN: the shapes nobody
measured, and every 1x1 convolution (in the train step oneDNN's 1x1s ran faster than their time
alone suggested, attempt 38 in docs/performance_notes.md). The same table and class give the same
choice in every process; the hosts of a multi-host run all take process 0's class
(`agreed_isa_class`), so they compile the same program even on mixed machines.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from resnet_jax.cpu import conv_choice, machine, onednn, settings
from resnet_jax.nn.conv import xla_conv

TABLE = Path(__file__).with_name("conv_table.json")


def geometry_key(x_shape, kernel_shape, dtype, *, stride, padding, dilation) -> str:
    """The table's key of a convolution: its geometry per image (the batch left out) as JSON."""
    _, h, w, c = x_shape
    return json.dumps(
        [
            [h, w, c],
            list(kernel_shape),
            jnp.dtype(dtype).name,
            list(stride),
            [list(p) for p in padding],
            list(dilation),
        ]
    )


def read(path: Path) -> dict:
    """A table file: {'choices': {isa: {key: {'choice', 'xla_ms', 'onednn_ms', 'batch'}}},
    'measured': {isa: {'cpu', 'date', 'command'}}}; empty where the file is absent."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return {"choices": {}, "measured": {}}


@functools.cache
def load() -> dict:
    """The shipped table, read once per process."""
    return read(TABLE)


def choose(x_shape, kernel_shape, dtype, *, stride, padding, dilation, isa: str) -> str:
    """'xla' where the table measured XLA faster for this geometry on this instruction-set class;
    'onednn' otherwise (unmeasured shapes and 1x1 convolutions included)."""
    if tuple(kernel_shape[:2]) == (1, 1):
        return "onednn"
    key = geometry_key(
        x_shape, kernel_shape, dtype, stride=stride, padding=padding, dilation=dilation
    )
    entry = load()["choices"].get(isa, {}).get(key)
    return entry["choice"] if entry else "onednn"


def tabled(
    x: jax.Array,
    kernel: jax.Array,
    *,
    stride: tuple[int, int],
    padding: Sequence[tuple[int, int]],
    dilation: tuple[int, int],
    groups: int,
    isa: str,
) -> jax.Array:
    """A ConvBackend (with `isa` bound): XLA for the shapes the table gives to XLA, oneDNN for the
    rest it handles, XLA for what oneDNN does not handle."""
    args = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    if conv_choice.has_choice(x, kernel, groups, padding) and (
        choose(
            x.shape,
            kernel.shape,
            x.dtype,
            stride=stride,
            padding=padding,
            dilation=dilation,
            isa=isa,
        )
        == "xla"
    ):
        return xla_conv(x, kernel, **args)
    return onednn.conv_backend(x, kernel, **args)


@functools.cache
def backend(isa: str):
    """The ConvBackend of train.conv_impl='auto' for an instruction-set class (one object per class,
    so that models built twice compare equal and compile once)."""
    return functools.partial(tabled, isa=isa)


def agreed_isa_class() -> str:
    """This CPU's instruction-set class; in a multi-host run, process 0's, sent to every host."""
    isa = machine.isa_class()
    if jax.process_count() == 1:
        return isa
    from jax.experimental import multihost_utils

    classes = (*machine.ISA_CLASSES, "baseline")
    index = multihost_utils.broadcast_one_to_all(np.int32(classes.index(isa)))
    return classes[int(index)]


def model_geometries(name: str, batch: int, dtype: str) -> list[dict]:
    """Each distinct convolution of a registry model's forward pass at this batch and dtype (traced,
    nothing computed): x and kernel shapes, dtype, stride, padding, dilation, groups."""
    from resnet_jax.nn.models import DTYPES, get_model

    seen: dict[str, dict] = {}

    def record(x, kernel, *, stride, padding, dilation, groups):
        geometry = dict(
            x_shape=tuple(x.shape),
            kernel_shape=tuple(kernel.shape),
            dtype=jnp.dtype(x.dtype).name,
            stride=tuple(stride),
            padding=tuple(map(tuple, padding)),
            dilation=tuple(dilation),
            groups=groups,
        )
        seen.setdefault(json.dumps(geometry), geometry)
        return xla_conv(x, kernel, stride=stride, padding=padding, dilation=dilation, groups=groups)

    model = get_model(name, dtype=DTYPES[dtype], conv_backend=record)
    side = 32 if name.startswith("cifar_") else 224  # the registry's CIFAR names, else ImageNet
    x = jax.ShapeDtypeStruct((batch, side, side, 3), jnp.float32)
    jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=True), x)
    return list(seen.values())


def measure_model(name: str, batch: int, dtype: str, rounds: int) -> dict[str, dict]:
    """{key: entry} for each convolution of the model that the table may send to XLA (oneDNN
    handles it, not 1x1): the median over `rounds` of each implementation's time and the choice."""
    entries = {}
    for g in model_geometries(name, batch, dtype):
        x = jax.ShapeDtypeStruct(g["x_shape"], g["dtype"])
        kernel = jax.ShapeDtypeStruct(g["kernel_shape"], g["dtype"])
        if not conv_choice.has_choice(x, kernel, g["groups"], g["padding"]):
            continue
        args = {k: g[k] for k in ("stride", "padding", "dilation")}
        times = {impl: [] for impl in conv_choice.IMPLS}
        while len(times["xla"]) < rounds:
            measured = conv_choice.measure(g["x_shape"], g["kernel_shape"], g["dtype"], **args)
            if measured["others"] > conv_choice.LOADED:  # another process ran: this round again
                print(f"  busy ({measured['others']:.1f} cores): measuring again", flush=True)
                continue
            for impl in conv_choice.IMPLS:
                times[impl].append(measured[impl])
        xla_ms, onednn_ms = (1e3 * statistics.median(times[impl]) for impl in conv_choice.IMPLS)
        choice = conv_choice.faster(xla_ms, onednn_ms)
        key = geometry_key(g["x_shape"], g["kernel_shape"], g["dtype"], **args)
        entries[key] = dict(
            choice=choice, xla_ms=round(xla_ms, 3), onednn_ms=round(onednn_ms, 3), batch=batch
        )
        print(f"  {name} {dtype} {key}: xla {xla_ms:.2f} ms, onednn {onednn_ms:.2f} ms -> {choice}")
    return entries


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="cifar_resnet20:128,resnet50:8", help="NAME:BATCH,...")
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--rounds", type=int, default=5, help="measurements per shape (median)")
    parser.add_argument("--out", type=Path, default=TABLE)
    args = parser.parse_args(argv)
    settings.apply()  # as every run has them
    if not onednn.available():
        sys.exit(f"error: oneDNN is not available here ({onednn.why_unavailable()})")
    isa = machine.isa_class()
    dtypes = args.dtypes.split(",")
    if "bfloat16" in dtypes and not machine.bf16_units():
        dtypes.remove("bfloat16")  # 'auto' runs XLA's bf16 on such CPUs: nothing to choose
    entries = {}
    for model in args.models.split(","):
        name, _, batch = model.partition(":")
        for dtype in dtypes:
            entries.update(measure_model(name, int(batch or 8), dtype, args.rounds))
    table = read(args.out)
    table["choices"][isa] = dict(sorted(entries.items()))
    table["measured"][isa] = {
        "cpu": machine.cpu_description(),
        "date": datetime.date.today().isoformat(),
        "command": "python -m resnet_jax.cpu.conv_table " + " ".join(argv or sys.argv[1:]),
        "jax": jax.__version__,
    }
    args.out.write_text(json.dumps(table, indent=1, sort_keys=True) + "\n")
    chosen = sum(e["choice"] == "xla" for e in entries.values())
    print(f"{args.out}: {isa}: {len(entries)} shapes measured, {chosen} to XLA")


if __name__ == "__main__":
    main()
