"""The process-wide settings an entry point makes first, and the convolution backend it picks for a
run.

    from resnet_jax import runtime
    runtime.setup()  # first thing in main(): before JAX starts its backend and threads
    backend = runtime.conv_backend("auto", parallel_mode="single", dtype="float32")
    model = get_model("cifar_resnet20", conv_backend=backend)

Nothing else in the package changes process state on import: models, data and the trainer are plain
code, and every setting below is made here, once, by whoever runs the process (main, sweep,
benchmark, tests).
"""

from __future__ import annotations

import os

import jax

from resnet_jax.cpu import conv_choice, conv_table, machine, onednn, settings
from resnet_jax.nn.conv import ConvBackend

# What train.conv_impl takes: 'auto' picks per run and per shape from a shipped table
# (conv_impl_for, cpu/conv_table.py); 'fastest' per convolution shape, by timing XLA's and oneDNN's
# on this CPU (cpu/conv_choice.py).
CONV_IMPLS = ("auto", "xla", "onednn", "fastest")


def setup(*, keep_freed_memory: bool = True) -> None:
    """The CPU settings (cpu/settings.py: XLA flags, glibc malloc, OpenMP waiting), gs:// through
    gcsfs and TFDS offline, for this process; harmless to call twice.

    TFDS, where installed, never reaches for GCS to look up a data set (4.9.10 already has it off;
    older ones do not). Without TFDS (a GPU machine timing synthetic batches) there is nothing to
    turn off. TensorFlow itself is imported later, on first use, with its GPUs hidden
    (data/tensorflow_cpu.py).
    """
    settings.apply(keep_freed_memory=keep_freed_memory)
    # gs:// through fsspec (gcsfs), TensorFlow installed or not: the stack the tests run against a
    # GCS server; TensorFlow's own client cannot be pointed at one (EPATH_USE_TF=true chooses it).
    os.environ.setdefault("EPATH_USE_TF", "false")
    try:
        # cheap: TFDS imports TensorFlow only when used
        from tensorflow_datasets.core.utils import (
            gcs_utils,
        )
    except ImportError:
        return
    gcs_utils._is_gcs_disabled = True


def cluster(
    coordinator_address: str | None,
    num_processes: int | None,
    process_id: int | None,
    distributed: bool,
    env: dict | None = None,
) -> dict | None:
    """jax.distributed.initialize's arguments for main's flags, each defaulting to its JAX_*
    variable; under `distributed` on several SkyPilot nodes, SkyPilot's variables; {} where JAX
    finds the cluster itself (a TPU pod slice, Slurm, Open MPI); None for one process."""
    env = os.environ if env is None else env
    count = int(env.get("JAX_NUM_PROCESSES", 1)) if num_processes is None else num_processes
    if count > 1:
        index = int(env.get("JAX_PROCESS_ID", 0)) if process_id is None else process_id
        address = coordinator_address or env.get("JAX_COORDINATOR_ADDRESS")
        return {"coordinator_address": address, "num_processes": count, "process_id": index}
    if distributed:
        return skypilot_cluster(env) or {}
    return None


def skypilot_cluster(env: dict) -> dict | None:
    """jax.distributed.initialize's arguments on a SkyPilot job of several nodes.

    SkyPilot sets SKYPILOT_NUM_NODES, SKYPILOT_NODE_RANK and SKYPILOT_NODE_IPS (one address a line);
    the first node coordinates, on port $RESNET_JAX_COORDINATOR_PORT (default 8476). None for one
    node, where JAX finds a TPU pod slice's hosts itself.
    """
    nodes = int(env.get("SKYPILOT_NUM_NODES", 1))
    if nodes <= 1:
        return None
    first = env["SKYPILOT_NODE_IPS"].split()[0]
    port = env.get("RESNET_JAX_COORDINATOR_PORT", "8476")
    return {
        "coordinator_address": f"{first}:{port}",
        "num_processes": nodes,
        "process_id": int(env["SKYPILOT_NODE_RANK"]),
    }


def conv_impl_for(conv_impl: str, *, parallel_mode: str, dtype: str) -> str:
    """'auto' -> 'table' where oneDNN helps (a run on the CPU, not SPMD-partitioned, in float32,
    or in bfloat16 on a CPU with bf16 units: `machine.bf16_units()`), else 'xla'. 'table' is oneDNN
    with the shapes that cpu/conv_table.json measured faster in XLA on this CPU kind sent to XLA.
    'fastest' stays where 'auto' would pick oneDNN (each shape then timed here, on first use) and
    is 'xla' elsewhere.

    Under parallel='sharding' XLA cannot split a custom call over devices and would gather the batch
    onto each. Without bf16 units oneDNN has no fast bf16 kernels, and XLA's (bf16 through float32)
    is the faster.
    """
    if conv_impl not in CONV_IMPLS:
        raise ValueError(f"conv_impl={conv_impl!r}: use one of {CONV_IMPLS}")
    if conv_impl not in ("auto", "fastest"):
        return conv_impl
    dtype_fits = dtype == "float32" or (dtype == "bfloat16" and machine.bf16_units())
    fits = jax.default_backend() == "cpu" and dtype_fits and parallel_mode != "sharding"
    if not (fits and onednn.available()):
        return "xla"
    return "table" if conv_impl == "auto" else conv_impl


def conv_backend(
    conv_impl: str, *, parallel_mode: str = "single", dtype: str = "float32"
) -> ConvBackend | None:
    """The models' `conv_backend` for a run: None (XLA's), oneDNN's, or the faster of the two per
    shape, as `conv_impl_for` decides."""
    return backend_of(conv_impl_for(conv_impl, parallel_mode=parallel_mode, dtype=dtype))


def backend_of(impl: str) -> ConvBackend | None:
    """The models' `conv_backend` for an implementation as `conv_impl_for` resolved it ('xla',
    'onednn', 'table', 'fastest')."""
    if impl == "table":
        return conv_table.backend(conv_table.agreed_isa_class())
    return {"onednn": onednn.conv_backend, "fastest": conv_choice.fastest}.get(impl)
