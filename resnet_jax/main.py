"""Entry point: a config file in, a trained model, metrics and checkpoints in --workdir out.

    python -m resnet_jax.main --config=configs/default.py --workdir=/tmp/runs/default
    python -m resnet_jax.main --config=configs/cifar10.py:resnet56 --workdir=D --config.optim.lr=0.2

The same command on the same workdir resumes from its latest intact checkpoint. Several hosts: the
same command on each with --coordinator_address=HOST:PORT --num_processes=P --process_id=i (or the
JAX_* variables of those names); on a Cloud TPU pod slice, Slurm, Open MPI or several SkyPilot
nodes, --distributed finds them. The workdir may be a folder or gs://BUCKET/PATH (docs/cloud.md).
"""

from __future__ import annotations

import jax
from absl import app, flags
from ml_collections import config_flags

from resnet_jax import build, errors, runtime, trainer

FLAGS = flags.FLAGS


def define_flags(values: flags.FlagValues = FLAGS) -> None:
    """The command's flags, defined when it runs (importing this module defines none)."""
    config_help = "Config file[:arg]; --config.GROUP.FIELD=VALUE overrides a field."
    config_flags.DEFINE_config_file("config", None, config_help, values, lock_config=True)

    def define(kind, *args):
        kind(*args, flag_values=values)

    define(flags.DEFINE_string, "workdir", None, "Checkpoints, metrics and records go here.")
    define(flags.DEFINE_string, "coordinator_address", None, "host:port of process 0.")
    define(flags.DEFINE_integer, "num_processes", None, "Processes in the run (default 1).")
    define(flags.DEFINE_integer, "process_id", None, "This process's index.")
    define(flags.DEFINE_bool, "print_config", False, "Print the config, check it and exit.")
    define(flags.DEFINE_bool, "distributed", False, "Let JAX (or SkyPilot) name the cluster.")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    config = FLAGS.config
    if config is not None and FLAGS.print_config:
        print(config, end="", flush=True)
        build.validate_config(config, device_count=jax.device_count(), process_count=1)
        return
    if config is None or not FLAGS.workdir:
        raise app.UsageError("--config and a non-empty --workdir are required.")
    runtime.setup()  # before the first computation creates the backend and its threads
    cluster = runtime.cluster(
        FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id, FLAGS.distributed
    )
    if cluster is not None:
        jax.distributed.initialize(**cluster)  # {}: the cluster tells JAX who coordinates
    summary = trainer.train_command(config, FLAGS.workdir)
    if jax.process_index() == 0:
        print("final: " + " | ".join(f"{k} {v:.4f}" for k, v in summary.items()), flush=True)


if __name__ == "__main__":
    define_flags()
    errors.run_absl(main)
