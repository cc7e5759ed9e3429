"""Run a sweep: one training run per point, locally one after another, or on cloud TPU VMs.

    python -m resnet_jax.sweep --config=configs/default.py --sweep=configs/sweeps/degradation.py
    --workdir=DIR
    python -m resnet_jax.sweep ... --workdir=gs://BUCKET/SWEEP --launcher=tpu --tpus=tpu-a,tpu-b \
        --zone=us-central2-b --accelerator_type=v4-8 [--spot] [--keep] [--dry_run]
    python -m resnet_jax.sweep ... --seeds=0,1,2      # every point once per seed (seed-major)
    python -m resnet_jax.sweep ... --collect          # table (Markdown, CSV) and plots of finished
    points

A sweep file defines `get_sweep(arg=None)` returning either a dict of axes, {"model.depth": [20,
56],
"model.shortcut": ["none", "A"]} (their grid), or an explicit list of override dicts. Each point
runs
`python -m resnet_jax.main --config=... --workdir=DIR/POINT --config.FIELD=VALUE ...` in its own
sub-workdir.
A point whose run finished is skipped; an interrupted one resumes from its checkpoint (main does
that).
--launcher=tpu creates the TPU VMs, ships and installs the code, runs each VM's points detached,
waits, reruns
preempted points and deletes the VMs (sweeps/tpu.py; docs/cloud.md walks through it).
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Sequence

from absl import app, flags, logging
from etils import epath

from resnet_jax import build, errors
from resnet_jax.sweeps import tpu
from resnet_jax.sweeps.check import check_points
from resnet_jax.sweeps.grid import (
    expand,
    load_function,
    parse_seeds,
    point_command,
    point_config,
    point_name,
)
from resnet_jax.sweeps.launch import run_local
from resnet_jax.sweeps.results import collect

FLAGS = flags.FLAGS


def define_flags() -> None:
    """The command's flags, defined when it runs (importing this module defines none)."""
    flags.DEFINE_string("config", None, "Config file, path[:arg].")
    flags.DEFINE_string("sweep", None, "Sweep file defining get_sweep(arg=None), path[:arg].")
    flags.DEFINE_string("workdir", None, "Sweep directory; each point trains in a sub-directory.")
    flags.DEFINE_enum("launcher", "local", ["local", "tpu"], "Where the points run.")
    flags.DEFINE_list(
        "tpus", [], "TPU VM names for --launcher=tpu (points are queued round-robin)."
    )
    flags.DEFINE_string(
        "zone", None, "GCP zone of the TPU VMs, e.g. us-central2-b (v4) or us-west4-a (v5e)."
    )
    flags.DEFINE_string(
        "accelerator_type",
        "v4-8",
        "TPU VM type: v4-8, v5litepod-8, ...; a pod slice (v4-32) runs "
        "each point on all its hosts.",
    )
    flags.DEFINE_string(
        "tpu_version", "tpu-ubuntu2204-base", "TPU VM runtime software (v5e: v2-alpha-tpuv5-lite)."
    )
    flags.DEFINE_bool(
        "spot", False, "Create Spot TPU VMs: cheaper, preemptible; a preempted point is rerun."
    )
    flags.DEFINE_bool("keep", False, "Leave the TPU VMs at the end instead of deleting them.")
    flags.DEFINE_integer("poll_seconds", 60, "How often --launcher=tpu checks on its VMs.")
    flags.DEFINE_integer(
        "max_retries", 3, "How often a TPU's unfinished points are rerun after a preemption."
    )
    flags.DEFINE_string(
        "status_file",
        None,
        "Local copy of the TPU sweep's status, also copied to "
        "WORKDIR/sweep_status.json (default: sweep_status-BUCKET_PATH.json here).",
    )
    flags.DEFINE_string("repo_dir", "~/resnet_jax", "Where the code is unpacked on the TPU VMs.")
    flags.DEFINE_list(
        "seeds",
        [],
        "Seeds of every point, e.g. 0,1,2: each sets the run's train.seed and data.seed, "
        "and a point's seeds are one group in --collect (replaces the sweep file's 'seeds' axis).",
    )
    flags.DEFINE_bool("dry_run", False, "Print the commands instead of running them.")
    flags.DEFINE_bool("collect", False, "Only collect finished points into a table and plots.")
    flags.DEFINE_string(
        "results_dir",
        None,
        "Where --collect writes results.{md,csv,json} and the plots (default: the "
        "sweep's --workdir), e.g. experiments/results/NAME.",
    )
    flags.DEFINE_bool(
        "print_config",
        False,
        "Print each point's resolved config (the base config with the point's "
        "overrides) and exit; nothing runs, --workdir is not needed.",
    )


def main(argv: Sequence[str]) -> None:
    errors.no_arguments(argv)
    for name in ("config", "sweep") + (() if FLAGS.print_config else ("workdir",)):
        if not getattr(FLAGS, name):
            raise app.UsageError(f"--{name} is required.")
    get_sweep, arg = load_function(FLAGS.sweep, "get_sweep")
    points = expand(get_sweep(arg), parse_seeds(FLAGS.seeds))
    if FLAGS.print_config:
        base = load_config(FLAGS.config)
        for point in points:
            print(f"# {point_name(point)}\n{point_config(base, point)}")
        return
    workdir = epath.Path(FLAGS.workdir)
    if FLAGS.collect:
        out = epath.Path(FLAGS.results_dir) if FLAGS.results_dir else None
        collect(workdir, points, out=out, command=sweep_command())
        return
    config = load_config(FLAGS.config)
    check_points(config, points, *data_shape(config))
    if FLAGS.launcher == "tpu":
        run_on_tpus(points)
    elif FLAGS.dry_run:
        for point in points:
            print(
                shlex.join(
                    point_command(
                        FLAGS.config, str(workdir / point_name(point)), point, sys.executable
                    )
                )
            )
    else:
        run_local(FLAGS.config, points, workdir)
        collect(workdir, points, command=sweep_command())


def sweep_command() -> str:
    """The command that runs this sweep locally (what its results record), without --collect and
    its output."""
    seeds = [f"--seeds={','.join(FLAGS.seeds)}"] if FLAGS.seeds else []
    return shlex.join(
        [
            "python",
            "-m",
            "resnet_jax.sweep",
            f"--config={FLAGS.config}",
            f"--sweep={FLAGS.sweep}",
            *seeds,
            f"--workdir={FLAGS.workdir}",
        ]
    )


def data_shape(config) -> tuple[tuple[int, int, int] | None, int]:
    """(image shape, class count) of the config's data set from its info, or (None, 0) with a
    warning where
    that cannot be read here (a bucket only the runs reach): each run then checks its own model as
    it starts."""
    try:
        shape = build.data_shape(config.data)
    except ValueError as error:
        logging.warning(
            "The points' models are not traced here, the data's info is unreadable (%s); each run "
            "traces its own as it starts.",
            error,
        )
        return None, 0
    return shape.image_shape, shape.num_classes


def load_config(spec: str):
    """The config file's ConfigDict, `path[:arg]` as main reads it."""
    get_config, arg = load_function(spec, "get_config")
    return get_config(arg) if arg is not None else get_config()


def run_on_tpus(points: Sequence[dict]) -> None:
    """--launcher=tpu: the whole life of the TPU VMs (or, with --dry_run, its commands); a failed
    point is an
    error line of its own as it fails, and exit status 1 at the end."""
    workdir = FLAGS.workdir.rstrip("/")
    if not FLAGS.zone:
        raise errors.UserError("--launcher=tpu needs --zone (e.g. --zone=us-central2-b)")
    if not workdir.startswith("gs://"):
        raise errors.UserError(
            f"--workdir={FLAGS.workdir}: --launcher=tpu needs a gs://BUCKET/PATH workdir: the TPU "
            f"VMs write their checkpoints and logs there, and it outlives them"
        )
    if FLAGS.poll_seconds < 0 or FLAGS.max_retries < 0:
        raise errors.UserError("--poll_seconds and --max_retries must be >= 0")
    cloud = tpu.Cloud(
        FLAGS.zone, FLAGS.accelerator_type, FLAGS.tpu_version, FLAGS.spot, FLAGS.repo_dir
    )
    status_file = FLAGS.status_file or tpu.default_status_file(workdir)
    jobs = tpu.make_jobs(FLAGS.config, points, workdir)
    if FLAGS.dry_run:
        todo = tpu.unfinished(jobs, tpu.read_status(status_file, workdir))
        for command in tpu.plan(
            tpu.queues(todo, FLAGS.tpus),
            cloud,
            revision=tpu.git_revision(),
            workdir=workdir,
            status_file=status_file,
            keep=FLAGS.keep,
        ):
            print(shlex.join(command))
        return
    try:
        statuses = tpu.run_sweep(
            jobs,
            FLAGS.tpus,
            cloud,
            workdir=workdir,
            status_file=status_file,
            keep=FLAGS.keep,
            poll_seconds=FLAGS.poll_seconds,
            max_retries=FLAGS.max_retries,
        )
    except KeyboardInterrupt:
        raise errors.Interrupted(
            f"the sweep was stopped (see {status_file}); rerun the same command to resume: done "
            f"points are skipped, the others resume from their checkpoints"
        ) from None
    failed = [job.name for job in jobs if statuses.get(job.name, {}).get("status") != "done"]
    if failed:
        raise errors.RunError(
            f"{len(failed)} of {len(jobs)} points did not finish ({', '.join(failed)}): see "
            f"{status_file}; rerun the same command to retry them"
        )


if __name__ == "__main__":
    define_flags()
    # A sweep file that is missing or rejects its arg (ValueError) is bad input.
    errors.run_absl(main, user_errors=(ValueError, FileNotFoundError))
