"""Run a sweep: one training run per point, locally one after another, or on cloud TPU VMs.

    python -m resnet_jax.sweep --config=configs/default.py --sweep=configs/sweeps/degradation.py --workdir=DIR
    python -m resnet_jax.sweep ... --launcher=tpu --tpus=tpu-a,tpu-b --zone=us-central2-b --dry_run
    python -m resnet_jax.sweep ... --collect          # table (Markdown, CSV) and plots of finished points

A sweep file defines `get_sweep(arg=None)` returning either a dict of axes, {"model.depth": [20, 56],
"model.shortcut": ["none", "A"]} (their grid), or an explicit list of override dicts. Each point runs
`python -m resnet_jax.main --config=... --workdir=DIR/POINT --config.FIELD=VALUE ...` in its own sub-workdir.
A point whose run finished is skipped; an interrupted one resumes from its checkpoint (main does that).
"""
from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path
from typing import Sequence

from absl import app, flags

from resnet_jax import cli
from resnet_jax.sweeps.grid import expand, load_function, point_command, point_name
from resnet_jax.sweeps.launch import run_local, tpu_commands
from resnet_jax.sweeps.results import collect

FLAGS = flags.FLAGS


flags.DEFINE_string("config", None, "Config file, path[:arg].")
flags.DEFINE_string("sweep", None, "Sweep file defining get_sweep(arg=None), path[:arg].")
flags.DEFINE_string("workdir", None, "Sweep directory; each point trains in a sub-directory.")
flags.DEFINE_enum("launcher", "local", ["local", "tpu"], "Where the points run.")
flags.DEFINE_list("tpus", [], "TPU VM names for --launcher=tpu (points are queued round-robin).")
flags.DEFINE_string("zone", None, "GCP zone of the TPU VMs.")
flags.DEFINE_string("repo_dir", "~/resnet_jax", "Where the repository is checked out on the TPU VMs.")
flags.DEFINE_bool("dry_run", False, "Print the commands instead of running them.")
flags.DEFINE_bool("collect", False, "Only collect finished points into a table and plots.")


def main(argv: Sequence[str]) -> None:
    del argv
    for name in ("config", "sweep", "workdir"):
        if not getattr(FLAGS, name):
            raise app.UsageError(f"--{name} is required.")
    get_sweep, arg = load_function(FLAGS.sweep, "get_sweep")
    points = expand(get_sweep(arg))
    workdir = Path(FLAGS.workdir)
    if FLAGS.collect:
        collect(workdir, points)
    elif FLAGS.launcher == "tpu":
        if not FLAGS.zone:
            raise app.UsageError("--launcher=tpu needs --zone.")
        commands = tpu_commands(FLAGS.config, points, FLAGS.workdir, FLAGS.tpus, FLAGS.zone, FLAGS.repo_dir)
        for command in commands:
            print(shlex.join(command))
            if not FLAGS.dry_run:
                subprocess.run(command, check=True)
    elif FLAGS.dry_run:
        for point in points:
            print(shlex.join(point_command(FLAGS.config, str(workdir / point_name(point)), point, sys.executable)))
    else:
        run_local(FLAGS.config, points, workdir)
        collect(workdir, points)


if __name__ == "__main__":
    # A sweep file that is missing or rejects its arg (ValueError) is bad input.
    cli.run_absl(main, user_errors=(ValueError, FileNotFoundError))
