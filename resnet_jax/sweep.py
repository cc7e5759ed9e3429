r"""Run a sweep: one training run per point (and seed), here one after another, or on SkyPilot.

    python -m resnet_jax.sweep --config=configs/default.py --sweep=configs/sweeps/degradation.py \
        --workdir=DIR [--seeds=0,1,2] [--dry_run]
    python -m resnet_jax.sweep ... --workdir=gs://BUCKET/SWEEP --launcher=sky \
        --accelerators=tpu-v4-8 [--spot] [--cloud=gcp --region=... --zone=...] [--dry_run]
    python -m resnet_jax.sweep ... --collect [--results_dir=experiments/results/NAME]

A sweep file defines `get_sweep(arg=None)`: a dict of axes, whose grid is the sweep, or a list of
override dicts (sweeps/grid.py). Each point runs `python -m resnet_jax.main --config=...
--workdir=DIR/POINT --config.FIELD=VALUE ...`; a finished point is skipped, an interrupted one
resumes. --launcher=sky submits each point as a SkyPilot managed job (sweeps/skypilot.py;
docs/cloud.md walks through it); `sky jobs queue` follows them, --collect reads the bucket.
"""

from __future__ import annotations

import ast
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from absl import app, flags, logging
from etils import epath

from resnet_jax import build, errors, records, runtime
from resnet_jax.sweeps import skypilot
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
from resnet_jax.training.checkpoint import finished_steps

FLAGS = flags.FLAGS
SKY_CACHE = Path("~/.cache/resnet_jax/sky").expanduser()  # HEAD's files, one folder per revision


def define_flags() -> None:
    """The command's flags, defined when it runs (importing this module defines none)."""
    flags.DEFINE_string("config", None, "Config file, path[:arg].")
    flags.DEFINE_string("sweep", None, "Sweep file defining get_sweep(arg=None), path[:arg].")
    flags.DEFINE_string("workdir", None, "Sweep directory; each point trains in a sub-directory.")
    flags.DEFINE_list(
        "seeds",
        [],
        "Seeds of every point, e.g. 0,1,2: each sets the run's train.seed and data.seed, and a "
        "point's seeds are one group in --collect (replaces the sweep file's 'seeds' axis).",
    )
    flags.DEFINE_multi_string(
        "set",
        [],
        "FIELD=VALUE for every point, not part of its name: a budget (train.steps=2000), a data "
        "set in a bucket (data.path=gs://BUCKET/cifar10). Repeat for several.",
    )
    flags.DEFINE_enum("launcher", "local", ["local", "sky"], "Where the points run.")
    flags.DEFINE_string(
        "accelerators", None, "--launcher=sky: e.g. tpu-v4-8, tpu-v5litepod-8 or H100:8."
    )
    flags.DEFINE_bool(
        "spot",
        False,
        "--launcher=sky: spot (preemptible) VMs; a preempted point is "
        "relaunched by SkyPilot and resumes.",
    )
    flags.DEFINE_string(
        "cloud",
        None,
        "--launcher=sky: gcp, aws, azure, kubernetes, ... (default: "
        "SkyPilot chooses among those `sky check` enabled).",
    )
    flags.DEFINE_string("region", None, "--launcher=sky: e.g. us-central2 (needs --cloud).")
    flags.DEFINE_string("zone", None, "--launcher=sky: e.g. us-central2-b (needs --region).")
    flags.DEFINE_integer("num_nodes", 1, "--launcher=sky: GPU nodes per point (multi-node).")
    flags.DEFINE_integer(
        "max_restarts_on_errors",
        1,
        "--launcher=sky: relaunches of a point that "
        "failed for a reason other than a preemption or a SIGTERM stop.",
    )
    flags.DEFINE_string("tpu_version", "tpu-ubuntu2204-base", "--launcher=sky: TPU VM software.")
    flags.DEFINE_bool(
        "dry_run",
        False,
        "Print the commands (--launcher=sky: each point's SkyPilot "
        "task as YAML) instead of running them.",
    )
    flags.DEFINE_bool("collect", False, "Only collect finished points into a table and plots.")
    flags.DEFINE_string(
        "results_dir",
        None,
        "Where --collect writes results.{md,csv,json} and the plots (default: the sweep's "
        "--workdir), e.g. experiments/results/NAME.",
    )
    flags.DEFINE_bool(
        "print_config",
        False,
        "Print each point's resolved config (the base config with the point's overrides) and "
        "exit; nothing runs, --workdir is not needed.",
    )


def main(argv: Sequence[str]) -> None:
    errors.no_arguments(argv)
    runtime.setup()  # gs:// as the runs reach it (gcsfs), for --collect and the finished-checks
    for name in ("config", "sweep") + (() if FLAGS.print_config else ("workdir",)):
        if not getattr(FLAGS, name):
            raise app.UsageError(f"--{name} is required.")
    get_sweep, arg = load_function(FLAGS.sweep, "get_sweep")
    try:
        sweep = get_sweep(arg)
    except ValueError:
        raise  # the sweep's own message for a bad arg
    except Exception as error:
        raise errors.UserError(
            f"--sweep={FLAGS.sweep}: the sweep file raised {type(error).__name__}: {error}"
        ) from None
    points = expand(sweep, parse_seeds(FLAGS.seeds))
    common = parse_overrides(FLAGS.set)
    config = point_config(load_config(FLAGS.config), common)  # what every point starts from
    if FLAGS.print_config:
        for point in points:
            print(f"# {point_name(point)}\n{point_config(config, point)}")
        return
    workdir = epath.Path(FLAGS.workdir)
    if FLAGS.collect:
        out = epath.Path(FLAGS.results_dir) if FLAGS.results_dir else None
        collect(workdir, points, out=out, command=sweep_command())
        return
    check_points(config, points, *data_shape(config))
    if FLAGS.launcher == "sky":
        run_on_sky(config, points, common)
    elif FLAGS.dry_run:
        for point in points:
            directory = str(workdir / point_name(point))
            overrides = {**common, **point}
            print(shlex.join(point_command(FLAGS.config, directory, overrides, sys.executable)))
    else:
        run_local(FLAGS.config, points, workdir, common)
        collect(workdir, points, command=sweep_command())


def parse_overrides(settings: Sequence[str]) -> dict:
    """--set=FIELD=VALUE ... -> {FIELD: value}, the value a Python literal where it reads as one."""
    overrides = {}
    for setting in settings:
        field, equals, text = setting.partition("=")
        if not equals or "." not in field:
            raise errors.UserError(
                f"--set={setting}: give GROUP.FIELD=VALUE, e.g. train.steps=2000"
            )
        try:
            overrides[field] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            overrides[field] = text
    return overrides


def run_on_sky(config, points: Sequence[dict], common: dict) -> None:
    """--launcher=sky: each unfinished point a managed job (with --dry_run, its task as YAML)."""
    if not FLAGS.workdir.startswith("gs://"):
        raise errors.UserError(
            f"--workdir={FLAGS.workdir}: --launcher=sky needs a gs://BUCKET/PATH workdir: the jobs "
            f"write their checkpoints and logs there, and a relaunched job resumes from it"
        )
    path = config.data.path
    if path and not str(path).startswith("gs://"):
        local = (
            f"config.data.path={path}: the cloud jobs cannot read a local path; put the data in a "
            f"bucket (--set=data.path=gs://BUCKET/...) or name a TFDS data set (--set=data.path= "
            f"--set=data.name=cifar10)"
        )
        if not FLAGS.dry_run:
            raise errors.UserError(local)
        print(f"warning: {local}", file=sys.stderr, flush=True)  # the plan, printed all the same
    if not FLAGS.accelerators:
        raise errors.UserError("--launcher=sky needs --accelerators (e.g. tpu-v4-8 or H100:8)")
    if FLAGS.num_nodes < 1 or FLAGS.max_restarts_on_errors < 0:
        raise errors.UserError("--num_nodes must be >= 1 and --max_restarts_on_errors >= 0")
    resources = skypilot.Resources(
        FLAGS.accelerators,
        FLAGS.spot,
        FLAGS.cloud,
        FLAGS.region,
        FLAGS.zone,
        FLAGS.num_nodes,
        FLAGS.max_restarts_on_errors,
        FLAGS.tpu_version,
    )
    revision = records.git_revision() or "HEAD"
    if revision.endswith("-dirty"):
        logging.warning("Uncommitted changes are not shipped: the jobs run %s", revision[:-6])
    tree = skypilot.committed_tree(revision.removesuffix("-dirty"), SKY_CACHE)
    sweep = Path(FLAGS.sweep.partition(":")[0]).stem.replace("_", "-")
    jobs = skypilot.make_jobs(
        FLAGS.config, points, FLAGS.workdir, sweep, resources, str(tree), common
    )
    if FLAGS.dry_run:
        print(skypilot.yaml_documents(jobs), end="")
        return
    try:
        skypilot.submit(jobs, lambda job: finished(config, job.point, job.workdir))
    except skypilot.LaunchError as error:
        raise (errors.UserError if error.no_cloud else errors.RunError)(str(error)) from None
    print("Follow them with `sky jobs queue`; collect with the same command and --collect.")


def finished(config, point: dict, workdir: str) -> bool:
    """Whether the point's run (local or gs://) has its last checkpoint: its train.steps, or the
    train.stop_after it pauses at."""
    train = point_config(config, point).train
    steps = finished_steps(epath.Path(workdir) / "checkpoints")
    return bool(steps) and max(steps) >= (train.stop_after or train.steps)


def sweep_command() -> str:
    """The command that runs this sweep here (what its results record), without --collect."""
    seeds = [f"--seeds={','.join(FLAGS.seeds)}"] if FLAGS.seeds else []
    settings = [f"--set={setting}" for setting in FLAGS.set]
    command = ["python", "-m", "resnet_jax.sweep", f"--config={FLAGS.config}", *settings]
    return shlex.join([*command, f"--sweep={FLAGS.sweep}", *seeds, f"--workdir={FLAGS.workdir}"])


def data_shape(config) -> tuple[tuple[int, int, int] | None, int]:
    """(image shape, class count) of the config's data set from its info, or (None, 0) with a
    warning where that cannot be read here (a bucket only the runs reach): each run then checks its
    own model as it starts."""
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


if __name__ == "__main__":
    define_flags()
    # A sweep file that is missing or rejects its arg (ValueError) is bad input.
    errors.run_absl(main, user_errors=(ValueError, FileNotFoundError))
