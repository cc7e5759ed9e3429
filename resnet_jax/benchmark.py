"""Throughput of the project's train and eval steps, beside the same networks in PyTorch, in one
run.

    python -m resnet_jax.benchmark  # ResNet-20/56 (32x32, batch 128), ResNet-50 (224x224, batch 8)
    python -m resnet_jax.benchmark --quick         # ResNet-20 float32 only, fewer repeats
    python -m resnet_jax.benchmark --models cifar_resnet20 --dtypes float32 --repeats 9

The JAX side is `train.train_step` / `train.eval_step` compiled as `train_and_evaluate` compiles
them (`parallel.Placement('single')`, state donated), once per convolution path (`--conv_impls`:
XLA's kernels and oneDNN's, a row each, timed in the same rounds); the PyTorch side is
`torch_reference`'s twin of each model (same parameter count, asserted) with SGD momentum, in NCHW
and channels-last memory formats. The timers take turns within each round, and a round counts only
if other processes used less than --max_others cores during it (a shared 2-core machine makes
PyTorch's OpenMP threads up to 15x slower while anything else runs); rows print the median of the
clean rounds, the ratio JAX/PyTorch being the median of per-round ratios. FLOP/s use the trace's
MACs (FLOPs = 2 x MACs; a train step ~ 3 forward passes), against a measured float32 matmul rate on
CPU and a table of bf16 peaks on GPU (MFU). PyTorch is optional.
"""

from __future__ import annotations

import functools
import os
import resource
import statistics
import time
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from resnet_jax import runtime
from resnet_jax.cpu import host_memory, machine, onednn
from resnet_jax.cpu.timing import Window
from resnet_jax.nn import models
from resnet_jax.nn.trace import totals, trace
from resnet_jax.training import optim, parallel, train

# (image size, batch on CPU, batch on GPU, classes) per model; other CIFAR depths use the CIFAR row.
CASES = {"cifar": (32, 128, 512, 10), "resnet50": (224, 8, 256, 1000)}
PARAMS = {"cifar_resnet20": 269_722, "cifar_resnet56": 853_018, "resnet50": 25_557_032}
# Dense bf16 peak FLOP/s by jax device_kind substring (vendor data sheets; SXM parts).
GPU_BF16_PEAK = {
    "H200": 989e12,
    "H100": 989e12,
    "A100": 312e12,
    "L40S": 362e12,
    "L4": 121e12,
    "A10": 125e12,
    "V100": 125e12,
}


def import_torch():
    """PyTorch, or None where it is not installed (the benchmark then times JAX alone).

    Imported on demand, not with this module: a process that times JAX alone never loads torch,
    whose CUDA libraries, loaded first, could stand in for the ones jaxlib's GPU plugin was built
    against.
    """
    try:
        import torch
    except ImportError:
        return None
    return torch


class Timings(NamedTuple):
    seconds: dict  # name -> median seconds per step over the clean rounds
    kept: list  # the rounds the medians use: [{name: seconds per step}]
    clean: int  # rounds without interference
    others: float  # median cores used by other processes per round

    def speedup(self, name: str, over: str) -> float:
        """Median over rounds of time(over) / time(name): how many times faster `name` ran in the
        same round."""
        return statistics.median(r[over] / r[name] for r in self.kept)


def interleaved(
    runs: dict[str, Callable[[int], None]],
    *,
    steps: int,
    repeats: int,
    max_others: float,
    max_rounds: int,
) -> Timings:
    """Rounds of `run(steps)` for each timer in turn, until `repeats` clean rounds or `max_rounds`
    in all.

    A round is clean when no window saw more than `max_others` cores busy elsewhere; if too few are,
    every round counts (and `clean` says how many were).
    """
    rounds, clean = [], []
    while len(clean) < repeats and len(rounds) < max_rounds:
        row = {}
        for name, run in runs.items():
            with Window() as w:
                run(steps)
            row[name] = (w.seconds / steps, w.others)
        rounds.append(row)
        if max(o for _, o in row.values()) <= max_others:
            clean.append(row)
    kept = clean if len(clean) >= max(1, repeats // 2) else rounds
    seconds = {n: statistics.median(r[n][0] for r in kept) for n in runs}
    others = statistics.median(max(o for _, o in r.values()) for r in kept)
    return Timings(seconds, [{n: t for n, (t, _) in r.items()} for r in kept], len(clean), others)


def case(name: str, on_gpu: bool) -> tuple[int, int, int]:
    """(image size, batch, classes) for a registry name."""
    size, cpu_batch, gpu_batch, classes = CASES["cifar" if name.startswith("cifar") else name]
    return size, gpu_batch if on_gpu else cpu_batch, classes


def jax_runs(
    name: str,
    dtype,
    batch_size: int,
    size: int,
    classes: int,
    conv_impl: str,
    *,
    kinds: Sequence[str] = ("train", "eval"),
) -> tuple[dict, dict]:
    """The project's compiled train and eval steps on one fixed batch, as `run(steps)` timers, and
    facts.

    Only the steps in `kinds` are compiled and returned (the train step's facts are always
    measured).
    """
    model = models.get_model(
        name, dtype=models.DTYPES[dtype], conv_backend=runtime.conv_backend(conv_impl, dtype=dtype)
    )
    lr_fn = optim.learning_rate_schedule("constant", lr=0.1, total_steps=1)
    tx = optim.make_optimizer("sgd", lr_fn, momentum=0.9)
    placement = parallel.Placement("single")
    state = placement.put_state(
        train.create_train_state(
            model, tx, jax.random.key(0), image_shape=(size, size, 3), ema=False
        )
    )
    rng = np.random.default_rng(0)
    batch = placement.put_batch(
        {
            "image": rng.standard_normal((batch_size, size, size, 3), np.float32),
            "label": rng.integers(0, classes, batch_size).astype(np.int32),
            "mask": np.ones(batch_size, bool),
        }
    )
    step = placement.compile(
        functools.partial(
            train.train_step, apply_fn=model.apply, optimizer=optim.Optimizer(tx, lr_fn)
        ),
        donate_state=True,
    )
    evaluate = placement.compile(
        functools.partial(train.eval_step, apply_fn=model.apply), donate_state=False
    )
    n_params = sum(x.size for x in jax.tree.leaves(state.params))
    start = time.perf_counter()
    # the call below reuses this compilation
    memory = step.lower(state, batch).compile().memory_analysis()
    compile_seconds = time.perf_counter() - start
    holder = list(step(state, batch))  # [state, metrics]
    jax.block_until_ready(holder)
    if "eval" in kinds:
        jax.block_until_ready(evaluate(holder[0], batch))

    def run_train(steps: int) -> None:
        for _ in range(steps):
            holder[:] = step(holder[0], batch)
        jax.block_until_ready(holder)

    def run_eval(steps: int) -> None:
        for _ in range(steps):
            out = evaluate(holder[0], batch)
        jax.block_until_ready(out)

    macs = totals(trace(model, (1, size, size, 3)))[1]
    xla_bytes = (
        None
        if memory is None
        else (
            memory.argument_size_in_bytes
            + memory.output_size_in_bytes
            + memory.temp_size_in_bytes
            - memory.alias_size_in_bytes
        )
    )
    compiled = [f for kind, f in (("train", step), ("eval", evaluate)) if kind in kinds]
    # one each unless something retraced
    facts = {
        "params": n_params,
        "macs": macs,
        "compile_s": compile_seconds,
        "xla_mb": xla_bytes and xla_bytes / 2**20,
        "compilations": lambda: sum(f._cache_size() for f in compiled),
    }
    runs = {"train": run_train, "eval": run_eval}
    return {kind: runs[kind] for kind in kinds}, facts


def torch_runs(
    name: str,
    dtype: str,
    batch_size: int,
    size: int,
    classes: int,
    channels_last: bool,
    device: str,
    *,
    compiled: bool = False,
    kinds: Sequence[str] = ("train", "eval"),
) -> dict:
    """PyTorch's train step (SGD momentum) and eval step; bfloat16 is autocast with float32
    parameters.

    `compiled`: the network through `torch.compile` (the first call of each kind compiles, in the
    warm-up). Only the steps in `kinds` are warmed up and returned, so a compiled run compiles
    nothing it does not time.
    """
    import torch

    from resnet_jax.interop import torch_models as torch_reference

    net = torch_reference.get_torch_model(name).to(device)
    n_params = torch_reference.num_params(net)
    assert n_params == PARAMS.get(name, n_params), f"{name}: torch twin has {n_params:,} parameters"
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    net = net.to(memory_format=fmt)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    x = torch.randn(batch_size, 3, size, size, device=device).contiguous(memory_format=fmt)
    y = torch.randint(0, classes, (batch_size,), device=device)
    forward = torch.compile(net) if compiled else net
    autocast = functools.partial(
        torch.autocast, device_type=device, dtype=torch.bfloat16, enabled=dtype == "bfloat16"
    )
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def run_train(steps: int) -> None:
        net.train()
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            with autocast():
                loss = torch.nn.functional.cross_entropy(forward(x), y)
            loss.backward()
            opt.step()
        sync()

    def run_eval(steps: int) -> None:
        net.eval()
        with torch.inference_mode(), autocast():
            for _ in range(steps):
                forward(x).float().argmax(-1)
        sync()

    runs = {kind: run for kind, run in (("train", run_train), ("eval", run_eval)) if kind in kinds}
    for run in runs.values():
        run(2)  # warm-up: compilation, oneDNN primitive caches, allocator
    return {**runs, "params": n_params}


def matmul_rate(n: int = 2048, repeats: int = 5) -> dict[str, float]:
    """Measured float32 FLOP/s of one large [n, n] @ [n, n] product, in JAX and (if present)
    PyTorch."""
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    dot = jax.jit(jnp.dot)
    dot(a, a).block_until_ready()
    runs = {"jax": lambda k: [dot(a, a).block_until_ready() for _ in range(k)]}
    torch = import_torch() if jax.default_backend() == "cpu" else None
    if torch is not None:
        t = torch.randn(n, n)
        runs["torch"] = lambda k: [torch.mm(t, t) for _ in range(k)]
    timed = interleaved(runs, steps=3, repeats=repeats, max_others=0.25, max_rounds=3 * repeats)
    return {k: 2 * n**3 / s for k, s in timed.seconds.items()}


def gpu_peak(kind: str | None = None) -> float | None:
    """Dense bf16 peak FLOP/s of a device kind (default: the first device's), longest matching name
    first."""
    kind = jax.devices()[0].device_kind if kind is None else kind
    return next(
        (GPU_BF16_PEAK[key] for key in sorted(GPU_BF16_PEAK, key=len, reverse=True) if key in kind),
        None,
    )


def define_flags() -> None:
    """The command's flags (defined when it runs, so that importing this module defines none)."""
    from absl import flags

    flags.DEFINE_list(
        "models", None, "Registry names to time (default: cifar_resnet20,cifar_resnet56,resnet50)."
    )
    flags.DEFINE_list("dtypes", None, "Computation dtypes (default: float32,bfloat16).")
    flags.DEFINE_list("kinds", ["train", "eval"], "Which steps to time.")
    flags.DEFINE_integer("batch", None, "Override every model's batch size.")
    flags.DEFINE_integer("repeats", 5, "Clean rounds per row (the median is reported).")
    flags.DEFINE_integer("steps", 3, "Steps per timed window.")
    flags.DEFINE_float(
        "max_others", 0.25, "Cores other processes may use in a round for it to count as clean."
    )
    flags.DEFINE_integer("torch_threads", os.cpu_count(), "PyTorch's intra-op threads.")
    flags.DEFINE_bool("torch", True, "Time PyTorch's twins too (--notorch: JAX alone).")
    flags.DEFINE_list(
        "conv_impls",
        ["xla", "onednn"],
        "The project's convolution paths to time, a row each "
        "(oneDNN: CPU; bfloat16 only with bf16 units; 'fastest': the faster of the two per shape, "
        "measured while the step compiles unless cached: its 'compile s' includes that).",
    )
    flags.DEFINE_bool(
        "quick",
        False,
        "ResNet-20 float32 (unless --models/--dtypes say otherwise), 3 rounds of 2 "
        "steps, no matmul rate.",
    )


class Options(NamedTuple):
    models: list[str]
    dtypes: list[str]
    kinds: list[str]
    batch: int | None
    repeats: int
    steps: int
    max_others: float
    torch_threads: int
    torch: bool
    conv_impls: list[str]
    quick: bool


def options() -> Options:
    """The flags' values, with --quick's defaults applied."""
    from absl import flags

    f = flags.FLAGS
    repeats, steps = (3, 2) if f.quick else (f.repeats, f.steps)
    models = f.models or (
        ["cifar_resnet20"] if f.quick else ["cifar_resnet20", "cifar_resnet56", "resnet50"]
    )
    dtypes = f.dtypes or (["float32"] if f.quick else ["float32", "bfloat16"])
    return Options(
        models,
        dtypes,
        f.kinds,
        f.batch,
        repeats,
        steps,
        f.max_others,
        f.torch_threads,
        f.torch,
        f.conv_impls,
        f.quick,
    )


def main(argv: Sequence[str]) -> None:
    from resnet_jax import errors

    errors.no_arguments(argv)
    runtime.setup()  # before the first computation creates the backend and its threads
    # already set by setup (True if so); PyTorch's allocations share it
    keep = host_memory.keep_freed_memory()
    args = options()
    on_gpu = jax.default_backend() == "gpu"
    torch = import_torch() if args.torch else None
    use_torch = torch is not None
    device = "cuda" if on_gpu else "cpu"
    if use_torch and on_gpu and not torch.cuda.is_available():
        print("PyTorch has no CUDA here: timing JAX alone.")
        use_torch = False
    if use_torch:
        torch.set_num_threads(args.torch_threads)
    print(
        f"jax {jax.__version__} on {jax.devices()[0].device_kind} ({jax.default_backend()}), "
        f"XLA_FLAGS='{os.environ.get('XLA_FLAGS', '')}'"
    )
    print(
        f"host memory: {'freed memory kept for reuse' if keep else 'glibc defaults'} "
        "(resnet_jax.host_memory)"
    )
    print(
        "torch: "
        + (
            f"{torch.__version__}, {torch.get_num_threads()} threads"
            if use_torch
            else "off (--notorch)"
            if not args.torch
            else "not installed"
        )
    )
    if on_gpu:
        peak = gpu_peak()
        print(
            f"GPU bf16 dense peak: {peak / 1e12:.0f} TFLOP/s"
            if peak
            else "GPU peak unknown: no MFU"
        )
    else:
        print(f"cpu: {machine.cpu_description()}")
        peak = max(matmul_rate().values()) if not args.quick else None
        print(
            f"machine float32 matmul rate: {peak / 1e9:.0f} GFLOP/s (best of jnp.dot, torch.mm; "
            "2048^3)"
            if peak
            else "matmul rate skipped (--quick)"
        )
    impls = [i for i in args.conv_impls if i == "xla" or (not on_gpu and onednn.available())]
    for skipped in [i for i in args.conv_impls if i not in impls]:
        print(
            f"conv impl {skipped} skipped: "
            f"{'not on the GPU' if on_gpu else onednn.why_unavailable()}"
        )
    kinds = [kind for kind in ("train", "eval") if kind in args.kinds]
    header = (
        f"{'model':16} {'dtype':8} {'batch':>5} {'step':5} {'conv':7} {'jax img/s':>10} "
        f"{'torch NCHW':>10} "
        f"{'torch NHWC':>10} {'jax/NCHW':>8} {'jax/NHWC':>8} {'GFLOP/s':>8} {'%peak':>6} "
        f"{'compile s':>9} {'XLA MB':>7} {'clean':>5}"
    )
    print(header, flush=True)
    for name in args.models:
        size, batch_size, classes = case(name, on_gpu)
        batch_size = args.batch or batch_size
        for dtype in args.dtypes:
            # oneDNN computes bfloat16 only on CPUs with bf16 units; elsewhere its row would time
            # XLA twice.
            row_impls = [
                i for i in impls if i == "xla" or dtype == "float32" or machine.bf16_units()
            ]
            jax_side = {
                impl: jax_runs(name, dtype, batch_size, size, classes, impl, kinds=kinds)
                for impl in row_impls
            }
            facts = jax_side[row_impls[0]][1]
            assert facts["params"] == PARAMS.get(name, facts["params"]), (
                f"{name}: {facts['params']:,} parameters"
            )
            twins = {}
            if use_torch:
                for label, cl in (("NCHW", False), ("NHWC", True)):
                    twins[label] = torch_runs(
                        name, dtype, batch_size, size, classes, cl, device, kinds=kinds
                    )
                    assert twins[label]["params"] == facts["params"], (
                        "PyTorch twin differs in parameters"
                    )
            for kind, flops_per_image in (
                ("train", 6 * facts["macs"]),
                ("eval", 2 * facts["macs"]),
            ):
                if kind not in kinds:
                    continue
                timers = {
                    **{impl: runs[kind] for impl, (runs, _) in jax_side.items()},
                    **{label: t[kind] for label, t in twins.items()},
                }
                timed = interleaved(
                    timers,
                    steps=args.steps,
                    repeats=args.repeats,
                    max_others=args.max_others,
                    max_rounds=4 * args.repeats,
                )
                speed = {k: batch_size / s for k, s in timed.seconds.items()}
                for impl, (_, impl_facts) in jax_side.items():
                    rate = flops_per_image * speed[impl]
                    cells = [
                        f"{speed[k]:10.1f}" if k in speed else f"{'-':>10}"
                        for k in (impl, "NCHW", "NHWC")
                    ]
                    cells += [
                        f"{timed.speedup(impl, k):8.2f}" if k in speed else f"{'-':>8}"
                        for k in ("NCHW", "NHWC")
                    ]
                    mb = f"{impl_facts['xla_mb']:7.0f}" if impl_facts["xla_mb"] else f"{'-':>7}"
                    pct = f"{100 * rate / peak:6.1f}" if peak else f"{'-':>6}"
                    print(
                        f"{name:16} {dtype:8} {batch_size:5d} {kind:5} {impl:7} {' '.join(cells)} "
                        f"{rate / 1e9:8.1f} {pct} {impl_facts['compile_s']:9.1f} {mb} "
                        f"{timed.clean:2d}/{args.repeats}",
                        flush=True,
                    )
            for impl, (_, impl_facts) in jax_side.items():
                if impl_facts["compilations"]() != len(kinds):
                    print(
                        f"WARNING: {name} {dtype} {impl}: the steps compiled "
                        f"{impl_facts['compilations']()} "
                        f"times, not {len(kinds)}"
                    )
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"process peak RSS {rss:.0f} MB. 'XLA MB': the train step's buffers from XLA's buffer "
        "assignment "
        "(arguments + outputs + temporaries - donated). 'clean': rounds with other processes "
        "under "
        f"{args.max_others} cores. %peak: of the matmul rate on CPU, of the bf16 peak on GPU (MFU)."
    )


if __name__ == "__main__":
    from resnet_jax import errors

    define_flags()
    errors.run_absl(main)
