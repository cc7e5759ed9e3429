"""Entry point: a config file in, a trained model, metrics and checkpoints in --workdir out.

    python -m resnet_jax.main --config=configs/default.py --workdir=/tmp/runs/default
    python -m resnet_jax.main --config=configs/cifar10.py:resnet56 --workdir=DIR
    --config.optim.lr=0.2

Re-running the same command on the same workdir resumes from its latest intact checkpoint. Several
hosts: the
same command on each with --coordinator_address=HOST:PORT --num_processes=P --process_id=i (or
JAX_COORDINATOR_
ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID); on a Cloud TPU pod slice, Slurm or Open MPI,
--distributed lets JAX
find them. The workdir may be a local folder or gs://BUCKET/PATH (docs/cloud.md).
"""

from __future__ import annotations

import os

import jax
from absl import app, flags
from ml_collections import config_flags

from resnet_jax import build, errors, runtime, trainer

FLAGS = flags.FLAGS


def define_flags(values: flags.FlagValues = FLAGS) -> None:
    """The command's flags, defined when it runs (importing this module defines none)."""
    config_flags.DEFINE_config_file(
        "config",
        None,
        "Config file, e.g. configs/cifar10.py:resnet56; any field is overridden with "
        "--config.GROUP.FIELD=VALUE, and --print_config lists them all.",
        values,
        lock_config=True,
    )
    flags.DEFINE_string(
        "workdir", None, "Where checkpoints, metrics and the run's config go.", values
    )
    flags.DEFINE_string(
        "coordinator_address",
        None,
        "host:port of process 0 (default: $JAX_COORDINATOR_ADDRESS).",
        values,
    )
    flags.DEFINE_integer(
        "num_processes", None, "Processes in the run ($JAX_NUM_PROCESSES, else 1).", values
    )
    flags.DEFINE_integer(
        "process_id", None, "This process's index ($JAX_PROCESS_ID, else 0).", values
    )
    flags.DEFINE_bool(
        "print_config", False, "Print the resolved config, check it and exit.", values
    )
    flags.DEFINE_bool(
        "distributed", False, "Let JAX find the cluster (TPU pod slices, Slurm, MPI).", values
    )


def processes() -> dict:
    """The multi-process flags, each defaulting to its JAX_* environment variable."""
    env = os.environ
    count = FLAGS.num_processes
    index = FLAGS.process_id
    return {
        "coordinator_address": FLAGS.coordinator_address or env.get("JAX_COORDINATOR_ADDRESS"),
        "num_processes": int(env.get("JAX_NUM_PROCESSES", 1)) if count is None else count,
        "process_id": int(env.get("JAX_PROCESS_ID", 0)) if index is None else index,
    }


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    config = FLAGS.config
    if config is not None and FLAGS.print_config:
        print(config, end="", flush=True)
        build.validate_config(config, device_count=jax.device_count(), process_count=1)
        return
    if config is None or FLAGS.workdir is None:
        raise app.UsageError("--config and --workdir are required.")
    runtime.setup()  # before the first computation creates the backend and its threads
    cluster = processes()
    if cluster["num_processes"] > 1:
        jax.distributed.initialize(**cluster)
    elif FLAGS.distributed:
        # the cluster tells JAX the coordinator, the count and this index
        jax.distributed.initialize()
    summary = trainer.train_command(config, FLAGS.workdir)
    if jax.process_index() == 0:
        print("final: " + " | ".join(f"{k} {v:.4f}" for k, v in summary.items()), flush=True)


if __name__ == "__main__":
    define_flags()
    errors.run_absl(main)
