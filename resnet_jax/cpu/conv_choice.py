"""Each convolution through whichever of XLA and oneDNN runs it faster on this CPU, measured once
per shape.

    from resnet_jax.cpu import conv_choice
    model = get_model("resnet50", conv_backend=conv_choice.fastest)   # train.conv_impl='fastest'

Neither library wins everywhere. On 2 cores of an AMD EPYC (Zen 3, AVX2 only), oneDNN 3.2 computes
ResNet-20's 3x3 convolutions (batch 128) in 0.35-0.9x XLA's time, but ResNet-50's (batch 8) in
1.2-1.4x. `fastest` is a ConvBackend (nn/conv.py) that times both the first time a model traces a
convolution of a new shape (forward plus both gradients on random data, best of CALLS calls each)
and sends that shape to XLA only when XLA took under XLA_MARGIN of oneDNN's time. 1x1 convolutions
always go to oneDNN: alone XLA's (a dot) sometimes timed faster, but in the train step oneDNN's ran
faster. Measured in one process (docs/performance_notes.md, attempt 38): ResNet-50 train step 1.14x
conv_impl='onednn' and 1.08x PyTorch channels-last; ResNet-20 1.04x
'onednn'.

The times are kept in $RESNET_JAX_CACHE or ~/.cache/resnet_jax, one file per CPU model, core count
and versions of jax and oneDNN, so a machine measures a shape once (ResNet-50's eight non-1x1
shapes: ~20 s while the first step compiles). A batch of one (a model's initialisation) is not
measured and runs oneDNN. The two implementations take turns while timed, and a shape timed while
other processes kept more than LOADED cores busy is used by that process but not cached: the next
process measures it again (work on this process's own other threads is not seen). To measure a
machine again, delete its file. Only convolutions oneDNN takes (`onednn.handles`) have a choice; the
rest stay with XLA.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import logging
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from resnet_jax.cpu import machine, onednn
from resnet_jax.cpu.timing import Window
from resnet_jax.nn.conv import xla_conv

IMPLS = ("xla", "onednn")
CALLS = 3  # timed calls of each compiled function after a warm-up call; the best counts
# XLA is chosen when it takes under this fraction of oneDNN's time alone: a near tie stays with
# oneDNN, whose calls between XLA's fusions cost less in the step than their time alone suggests
# (attempt 38).
XLA_MARGIN = 0.9
# cores busy with other processes above which a measurement is not kept for later processes
LOADED = 0.25


def fastest(
    x: jax.Array,
    kernel: jax.Array,
    *,
    stride: tuple[int, int],
    padding: Sequence[tuple[int, int]],
    dilation: tuple[int, int],
    groups: int,
) -> jax.Array:
    """A ConvBackend: the faster of XLA and oneDNN for this shape on this CPU (measured on first
    use)."""
    args = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    if not onednn.available():
        return xla_conv(x, kernel, **args)
    # 1x1 convolutions stay with oneDNN (see above); a batch of one (an initialisation) is not worth
    # measuring.
    measured = has_choice(x, kernel, groups, padding) and x.shape[0] > 1
    if (
        measured
        and choice(
            x.shape, kernel.shape, x.dtype, stride=stride, padding=padding, dilation=dilation
        )
        == "xla"
    ):
        return xla_conv(x, kernel, **args)
    # which keeps XLA's for what oneDNN does not handle
    return onednn.conv_backend(x, kernel, **args)


def choice(x_shape, kernel_shape, dtype, *, stride, padding, dilation) -> str:
    """'xla' or 'onednn', the faster for this geometry: from the cache, or measured now (and cached
    unless other processes loaded the cores meanwhile: then this process uses the times and the next
    measures again)."""
    geometry = (
        tuple(x_shape),
        tuple(kernel_shape),
        jnp.dtype(dtype).name,
        tuple(stride),
        tuple(map(tuple, padding)),
        tuple(dilation),
    )
    # x [N, H, W, C], kernel [KH, KW, C, K], dtype, stride, padding, dilation
    key = json.dumps(geometry)
    times = _times()
    if key not in times:
        measured = measure(*geometry)
        times[key] = {impl: measured[impl] for impl in IMPLS}
        if measured["others"] <= LOADED:
            _save({key: times[key]})
        else:
            logging.warning(
                "conv_impl='fastest': %s measured while other processes kept %.1f cores busy; its "
                "times are used by this process only",
                key,
                measured["others"],
            )
    return faster(times[key]["xla"], times[key]["onednn"])


def has_choice(x, kernel, groups: int, padding) -> bool:
    """Whether a convolution's implementation is chosen per shape: oneDNN handles it and it is not
    1x1 (1x1 convolutions always go to oneDNN, see above)."""
    return onednn.handles(x, kernel, groups, padding) and tuple(kernel.shape[:2]) != (1, 1)


def faster(xla_time: float, onednn_time: float) -> str:
    """'xla' where XLA took under XLA_MARGIN of oneDNN's time, else 'onednn'."""
    return "xla" if xla_time < XLA_MARGIN * onednn_time else "onednn"


def measure(x_shape, kernel_shape, dtype, stride, padding, dilation) -> dict[str, float]:
    """Seconds of a forward pass plus its gradients (of x and the kernel) for each implementation
    on random data, best of CALLS calls, the two taking turns so that a passing load slows both;
    'others': the cores other processes kept busy meanwhile. Runs now, even while a model is being
    traced."""
    rng, dtype = np.random.default_rng(0), jnp.dtype(dtype)
    x = rng.standard_normal(x_shape).astype(dtype)
    kernel = (rng.standard_normal(kernel_shape) / np.sqrt(np.prod(kernel_shape[:3]))).astype(dtype)
    compute = {"xla": functools.partial(xla_conv, groups=1), "onednn": onednn.conv}
    with jax.ensure_compile_time_eval():  # execute here, not into the trace of the model that asked
        steps = {
            impl: _compiled_step(
                functools.partial(compute[impl], stride=stride, padding=padding, dilation=dilation),
                x,
                kernel,
            )
            for impl in IMPLS
        }
        seconds = {impl: float("inf") for impl in IMPLS}
        with Window() as window:
            for _ in range(CALLS):
                for impl in IMPLS:
                    start = time.perf_counter()
                    steps[impl]()
                    seconds[impl] = min(seconds[impl], time.perf_counter() - start)
    return {**seconds, "others": window.others}


def _compiled_step(conv, x: np.ndarray, kernel: np.ndarray):
    """`conv`'s forward pass and both gradients at (x, kernel), compiled now: a call that runs them
    and waits."""
    forward = jax.jit(conv)
    dy = np.ones(jax.eval_shape(forward, x, kernel).shape, x.dtype)
    backward = jax.jit(lambda x, kernel, dy: jax.vjp(conv, x, kernel)[1](dy))

    def step():
        jax.block_until_ready((forward(x, kernel), backward(x, kernel, dy)))

    step()  # compiles
    return step


def cache_path() -> Path:
    """The times of this machine: one file per CPU model, core count, versions of jax and oneDNN,
    and the oneDNN the handlers call (onednn.route_taken: jaxlib's or the wheel's)."""
    fields = machine.cpu_fields()
    key = [
        fields.get("model name", "?"),
        fields.get("flags", ""),
        str(len(os.sched_getaffinity(0))),
        jax.__version__,
        importlib.metadata.version(onednn.RUNTIME),
        str(onednn.route_taken()),
    ]
    digest = hashlib.sha256("\n".join(key).encode()).hexdigest()[:16]
    return onednn.cache_dir() / f"conv_times_{digest}.json"


@functools.cache
def _times() -> dict[str, dict[str, float]]:
    """This process's table of times, read once from the cache file."""
    return _read()


def _read() -> dict[str, dict[str, float]]:
    """The cache file's table; a missing or damaged one is empty."""
    try:
        times = json.loads(cache_path().read_text())
    except (OSError, ValueError):
        return {}
    return times if isinstance(times, dict) else {}


def _save(new: dict[str, dict[str, float]]) -> None:
    """Add `new` times to the cache file, written whole (temp file + rename, so parallel processes
    never read half of one); a cache that cannot be written only means measuring again next time."""
    path = cache_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as f:
            # keep what another process measured meanwhile
            json.dump({**_read(), **new}, f, indent=0)
        os.replace(f.name, path)
    except OSError:
        pass
