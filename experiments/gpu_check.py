"""GPU check (issue 19): ResNet-50 and ResNet-20 bfloat16 train steps, ours beside PyTorch's, on
one GPU.

    bash experiments/gpu_check.sh                       # on the GPU machine: under 8 minutes
    python -m experiments.gpu_check --out gpu_check.json
    # CPU, small nets: what the test runs
    python -m experiments.gpu_check --smoke --out /tmp/smoke.json

Prints, and writes as JSON with the date and the device: ResNet-50 (224x224, batch 256) and
ResNet-20 (32x32, batch 512) bfloat16 train steps in images/s, ours (`benchmark.jax_runs`: the
project's `train_step`, XLA's convolutions) and PyTorch's twins (`benchmark.torch_runs`:
channels-last, autocast bf16, SGD momentum, eager and, while the time budget lasts,
`torch.compile`), the ratios, and MFU: train FLOPs per image (6 x the trace's forward MACs) x
images/s over the device's dense bf16 peak (`benchmark.GPU_BF16_PEAK`: 989 TFLOP/s for H100 and H200
SXM). Synthetic batches, so no data set and no TensorFlow, TFDS, tensorboardX or ml_collections are
needed.

Each side runs in a process of its own, JAX first: the two frameworks' CUDA libraries never meet in
one process and each has the GPU's memory to itself. A side writes its rows as it finishes them, so
a run cut short by the budget still reports what it measured. The steps go through neither
`runtime.setup()` (CPU settings: XLA:CPU flags, glibc malloc) nor the oneDNN path; `python -m
resnet_jax.benchmark` times CPUs.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from types import SimpleNamespace
from typing import NamedTuple

from absl import flags

from resnet_jax import errors


class Case(NamedTuple):
    name: str  # registry name (resnet_jax.nn.models)
    label: str  # how the report calls it
    size: int  # image side, pixels
    batch: int
    classes: int


def cases(smoke: bool, resnet50_batch: int, resnet20_batch: int) -> list[Case]:
    """ResNet-50 first (the figure the issue asks for), then ResNet-20.

    --smoke: the same code on two CPU cores in seconds, so ResNet-8 stands in for ResNet-50 (whose
    compile and PyTorch bf16 warm-up alone take a minute there), and batches are 4.
    """
    if smoke:
        return [
            Case("cifar_resnet8", "ResNet-8", 32, 4, 10),
            Case("cifar_resnet20", "ResNet-20", 32, 4, 10),
        ]
    return [
        Case("resnet50", "ResNet-50", 224, resnet50_batch, 1000),
        Case("cifar_resnet20", "ResNet-20", 32, resnet20_batch, 10),
    ]


def time_steps(run, *, window_s: float, repeats: int, max_steps: int) -> tuple[float, int]:
    """Median seconds per step of `run(steps)` (which waits for its results) over `repeats` windows
    of about `window_s` seconds each, the step count chosen from one probe step; returns (seconds,
    steps per window)."""
    from resnet_jax import benchmark

    start = time.perf_counter()
    run(1)
    probe = time.perf_counter() - start
    steps = max(1, min(max_steps, math.ceil(window_s / max(probe, 1e-6))))
    timed = benchmark.interleaved(
        {"step": run}, steps=steps, repeats=repeats, max_others=math.inf, max_rounds=repeats
    )
    return timed.seconds["step"], steps


def _save(path: str, record: dict) -> None:
    with open(path + ".tmp", "w") as f:
        json.dump(record, f, indent=1)
    os.replace(path + ".tmp", path)


def jax_side(args: SimpleNamespace) -> None:
    """Our bf16 train steps, one row per case, written to args.side_out after each."""
    import jax

    from resnet_jax import benchmark

    device = jax.devices()[0]
    peak = benchmark.gpu_peak(device.device_kind) if jax.default_backend() == "gpu" else None
    record = {
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "device": device.device_kind,
        "devices": jax.device_count(),
        "peak_flops": peak,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "rows": [],
    }
    _save(args.side_out, record)
    print(
        f"jax {jax.__version__} on {device.device_kind} ({jax.default_backend()}, "
        f"{jax.device_count()} "
        f"device(s)); bf16 dense peak "
        + (f"{peak / 1e12:.0f} TFLOP/s" if peak else "unknown: no MFU"),
        flush=True,
    )
    for case in cases(args.smoke, args.resnet50_batch, args.resnet20_batch):
        start = time.perf_counter()
        runs, facts = benchmark.jax_runs(
            case.name, "bfloat16", case.batch, case.size, case.classes, "xla", kinds=("train",)
        )
        ready_s = time.perf_counter() - start
        seconds, steps = time_steps(
            runs["train"], window_s=args.window_s, repeats=args.repeats, max_steps=args.max_steps
        )
        # train step ~ 3 forward passes, 2 FLOPs per MAC
        flops = 6 * facts["macs"] * case.batch / seconds
        try:
            compilations = facts["compilations"]()  # a private jax API: absent in some versions
        except AttributeError:
            compilations = None
        row = {
            "model": case.name,
            "batch": case.batch,
            "size": case.size,
            "img_s": case.batch / seconds,
            "step_ms": 1e3 * seconds,
            "steps_per_window": steps,
            "tflops": flops / 1e12,
            "mfu": flops / peak if peak else None,
            "compile_s": facts["compile_s"],
            "ready_s": ready_s,
            "xla_mb": facts["xla_mb"],
            "compilations": compilations,
        }
        record["rows"].append(row)
        _save(args.side_out, record)
        mfu = f"MFU {100 * row['mfu']:.1f}%" if peak else "MFU -"
        print(
            f"jax   {case.label:9} bf16 batch {case.batch:4d}: {row['img_s']:9.1f} img/s, "
            f"{row['tflops']:6.1f} TFLOP/s, {mfu} (compile {facts['compile_s']:.0f} s)",
            flush=True,
        )


def torch_side(args: SimpleNamespace) -> None:
    """PyTorch's twins, channels-last autocast bf16: eager rows, then torch.compile rows while time
    is left."""
    from resnet_jax import benchmark

    torch = benchmark.import_torch()
    if torch is None:
        _save(args.side_out, {"torch": None, "rows": [], "note": "torch is not installed"})
        print("torch is not installed: no PyTorch rows", flush=True)
        return
    device = "cuda" if torch.cuda.is_available() and not args.smoke else "cpu"
    record = {
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "cudnn": torch.backends.cudnn.version() if device == "cuda" else None,
        "rows": [],
        "skipped": [],
    }
    if device == "cuda":
        torch.backends.cudnn.benchmark = True  # what a tuned PyTorch training script sets
    _save(args.side_out, record)
    print(f"torch {torch.__version__} on {record['device']}", flush=True)
    # Compiling takes longest for ResNet-50: each compiled row starts only if this much time is
    # left.
    need_s = {"resnet50": 150, "cifar_resnet20": 90}
    modes = [False] + ([True] if args.torch_compile else [])
    for compiled in modes:
        for case in cases(args.smoke, args.resnet50_batch, args.resnet20_batch):
            left = args.deadline - time.time()
            if compiled and left < need_s.get(case.name, 90):
                record["skipped"].append(
                    f"{case.name} torch.compile: {left:.0f} s left of the budget"
                )
                print(
                    f"torch {case.label} compiled: skipped, {left:.0f} s left of the budget",
                    flush=True,
                )
                continue
            start = time.perf_counter()
            runs = benchmark.torch_runs(
                case.name,
                "bfloat16",
                case.batch,
                case.size,
                case.classes,
                True,
                device,
                compiled=compiled,
                kinds=("train",),
            )
            ready_s = time.perf_counter() - start
            seconds, steps = time_steps(
                runs["train"],
                window_s=args.window_s,
                repeats=args.repeats,
                max_steps=args.max_steps,
            )
            row = {
                "model": case.name,
                "batch": case.batch,
                "size": case.size,
                "compiled": compiled,
                "img_s": case.batch / seconds,
                "step_ms": 1e3 * seconds,
                "steps_per_window": steps,
                "ready_s": ready_s,
            }
            record["rows"].append(row)
            _save(args.side_out, record)
            print(
                f"torch {case.label:9} bf16 batch {case.batch:4d} "
                f"{'compiled' if compiled else 'eager':8}: "
                f"{row['img_s']:9.1f} img/s (ready in {ready_s:.0f} s)",
                flush=True,
            )


def run_side(side: str, argv: Sequence[str], deadline: float) -> dict:
    """Run one side in a child process (this command's flags) until `deadline`; the rows it saved
    by then."""
    with tempfile.TemporaryDirectory() as scratch:
        path = os.path.join(scratch, f"{side}.json")
        command = [
            sys.executable,
            "-m",
            "experiments.gpu_check",
            *argv,
            f"--side={side}",
            f"--side_out={path}",
            f"--deadline={deadline}",
        ]
        timeout = max(10.0, deadline - time.time())
        try:
            status = subprocess.run(command, timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            status = "timed out"
        record = json.load(open(path)) if os.path.exists(path) else {"rows": []}
    if status != 0:
        record["error"] = f"the {side} side exited with status {status}"
        print(f"warning: {record['error']}; keeping the rows it finished", file=sys.stderr)
    return record


def summary(jax_record: dict, torch_record: dict) -> list[dict]:
    """One row per model: our img/s, MFU, PyTorch's eager and compiled img/s, and ours over each."""
    rows = []
    for ours in jax_record["rows"]:
        twins = {
            r["compiled"]: r["img_s"] for r in torch_record["rows"] if r["model"] == ours["model"]
        }
        eager, compiled = twins.get(False), twins.get(True)
        rows.append(
            {
                "model": ours["model"],
                "batch": ours["batch"],
                "jax_img_s": ours["img_s"],
                "mfu": ours["mfu"],
                "torch_eager_img_s": eager,
                "torch_compiled_img_s": compiled,
                "jax_over_torch_eager": eager and ours["img_s"] / eager,
                "jax_over_torch_compiled": compiled and ours["img_s"] / compiled,
            }
        )
    return rows


def print_summary(rows: list[dict]) -> None:
    def cell(value, form):
        return format(value, form) if value is not None else "-".rjust(len(format(0.0, form)))

    print(
        f"\n{'model':15} {'batch':>5} {'jax img/s':>10} {'MFU %':>6} {'torch eager':>11} "
        f"{'torch compiled':>14} "
        f"{'jax/eager':>9} {'jax/compiled':>12}"
    )
    for r in rows:
        print(
            f"{r['model']:15} {r['batch']:5d} {cell(r['jax_img_s'], '10.1f')} "
            f"{cell(r['mfu'] and 100 * r['mfu'], '6.1f')} {cell(r['torch_eager_img_s'], '11.1f')} "
            f"{cell(r['torch_compiled_img_s'], '14.1f')} {cell(r['jax_over_torch_eager'], '9.2f')} "
            f"{cell(r['jax_over_torch_compiled'], '12.2f')}"
        )


flags.DEFINE_string("out", "gpu_check.json", "Where the JSON of the figures goes.")
flags.DEFINE_bool(
    "smoke",
    False,
    "CPU, ResNet-8 for ResNet-50, batches of 4, one step a window, no torch.compile.",
)
flags.DEFINE_integer("resnet50_batch", 256, "ResNet-50's batch.")
flags.DEFINE_integer("resnet20_batch", 512, "ResNet-20's batch.")
flags.DEFINE_integer("repeats", 3, "Timed windows per row (median reported).")
flags.DEFINE_float("window_s", 2.0, "Seconds per timed window.")
flags.DEFINE_integer("max_steps", 200, "Most steps per window.")
flags.DEFINE_float(
    "budget_s",
    450.0,
    "Wall-clock budget for both sides; torch.compile rows start only while it lasts.",
)
flags.DEFINE_bool(
    "torch_compile", None, "Time torch.compile rows too (default: yes, but not with --smoke)."
)
flags.DEFINE_enum("side", None, ("jax", "torch"), "Internal: the part a child process runs.")
flags.DEFINE_string("side_out", None, "Internal: where a child process writes its rows.")
flags.DEFINE_float("deadline", None, "Internal: the Unix time a child process stops starting rows.")
FLAGS = flags.FLAGS


def options() -> SimpleNamespace:
    """The flags' values, with --smoke's settings applied."""
    args = SimpleNamespace(
        **{
            name: FLAGS[name].value
            for name in (
                "out",
                "smoke",
                "resnet50_batch",
                "resnet20_batch",
                "repeats",
                "window_s",
                "max_steps",
                "budget_s",
                "torch_compile",
                "side",
                "side_out",
                "deadline",
            )
        }
    )
    if args.smoke:
        args.repeats, args.window_s, args.max_steps = 1, 0.0, 1
    if args.torch_compile is None:
        # inductor compiles C++ for a minute or more on two CPU cores
        args.torch_compile = not args.smoke
    return args


def main(argv: Sequence[str]) -> None:
    errors.no_arguments(argv)
    args = options()
    # the flags, for the sides
    argv = [a for a in sys.argv[1:] if not a.startswith(("--side", "--deadline"))]
    if args.smoke:
        os.environ["JAX_PLATFORMS"] = (
            "cpu"  # read by the children: the smoke run never claims a GPU
        )
    if args.side:
        (jax_side if args.side == "jax" else torch_side)(args)
        return
    started = time.time()
    # Ours first, with at most 55% of the budget (compiling both steps takes XLA a minute or two on
    # a GPU), so PyTorch's eager rows always get their turn; the compiled ones take what is left.
    jax_record = run_side("jax", argv, started + 0.55 * args.budget_s)
    torch_record = run_side("torch", argv, started + args.budget_s)
    rows = summary(jax_record, torch_record)
    print_summary(rows)
    record = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": jax_record.get("device"),
        "smoke": args.smoke,
        "wall_s": time.time() - started,
        "summary": rows,
        "jax": jax_record,
        "torch": torch_record,
        "peak_assumed": "dense bf16 FLOP/s by device kind, resnet_jax.benchmark.GPU_BF16_PEAK",
        "flops_per_image": "train: 6 x forward MACs (resnet_jax.nn.trace)",
    }
    _save(args.out, record)
    print(
        f"\n{record['device']}, {record['date']}, {record['wall_s']:.0f} s; figures in {args.out}"
    )


if __name__ == "__main__":
    errors.run_absl(main)
