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

import importlib.util
import itertools
import json
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from absl import app, flags

STATUS_FILE = "sweep_status.json"


def load_function(spec: str, name: str):
    """`path/file.py[:arg]` -> (the file's function `name`, arg or None)."""
    path, _, arg = spec.partition(":")
    if not Path(path).is_file():
        raise FileNotFoundError(f"No such file {path!r} (from {spec!r}).")
    module_spec = importlib.util.spec_from_file_location(Path(path).stem, path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    if not hasattr(module, name):
        raise ValueError(f"{path} defines no {name}(arg=None) function.")
    return getattr(module, name), (arg or None)


def expand(sweep: Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Points of a sweep: the grid (cartesian product, first axis slowest) of a dict of axes, or the list."""
    if isinstance(sweep, Mapping):
        for key, values in sweep.items():
            if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
                raise ValueError(f"Sweep axis {key!r} must be a non-empty list of values, got {values!r}.")
        keys = list(sweep)
        return [dict(zip(keys, combo)) for combo in itertools.product(*(sweep[k] for k in keys))]
    points = [dict(p) for p in sweep]
    if not points:
        raise ValueError("The sweep has no points.")
    return points


def point_name(point: Mapping[str, Any]) -> str:
    """A directory name that says what the point is: 'model.depth=20,model.shortcut=none'."""
    text = ",".join(f"{k}={format_value(v)}" for k, v in point.items())
    return re.sub(r"[^A-Za-z0-9._=,+-]", "_", text) or "default"


def format_value(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, (tuple, list)) else str(value)


def point_command(config: str, workdir: str, point: Mapping[str, Any], python: str = "python") -> list[str]:
    """The command line that trains one point."""
    overrides = [f"--config.{k}={_cli_value(v)}" for k, v in point.items()]
    return [python, "-m", "resnet_jax.main", f"--config={config}", f"--workdir={workdir}", *overrides]


def _cli_value(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return "(" + ",".join(map(str, value)) + ("," if len(value) == 1 else "") + ")"
    return str(value)


def run_local(config: str, points: Sequence[dict], workdir: Path,
              common: Mapping[str, Any] | None = None) -> list[Path]:
    """Train each point in turn; skip finished ones. Returns the point directories.

    `common` overrides go to every run (a budget, say) without appearing in the point names.
    """
    directories = []
    for i, point in enumerate(points):
        directory = workdir / point_name(point)
        directories.append(directory)
        status_file = directory / STATUS_FILE
        status = json.loads(status_file.read_text()) if status_file.exists() else {}
        if status.get("status") == "done":
            print(f"[{i + 1}/{len(points)}] {directory.name}: done, skipped", flush=True)
            continue
        directory.mkdir(parents=True, exist_ok=True)
        command = point_command(config, str(directory), {**(common or {}), **point}, sys.executable)
        print(f"[{i + 1}/{len(points)}] {directory.name}: {shlex.join(command)}", flush=True)
        start = time.monotonic()
        result = subprocess.run(command)
        # Wall seconds of every attempt that returned, so a resumed point reports its whole cost.
        seconds = status.get("seconds", 0.0) + time.monotonic() - start
        done = result.returncode == 0
        status_file.write_text(json.dumps({"status": "done" if done else "failed", "point": point,
                                           "seconds": round(seconds, 1)}))
        if not done:
            raise SystemExit(f"Point {directory.name} failed (exit {result.returncode}); fix it and run the same "
                             f"command again: finished points are skipped, this one resumes.")
    return directories


def tpu_commands(config: str, points: Sequence[dict], workdir: str, tpus: Sequence[str], zone: str,
                 repo_dir: str = "~/resnet_jax") -> list[list[str]]:
    """gcloud commands that run the points on TPU VMs: point i goes to tpus[i % len(tpus)], in a queue.

    Each TPU gets one `gcloud compute tpus tpu-vm ssh` whose command runs its points one after another on
    all workers (multi-host TPU slices run one process per host; jax.distributed finds its peers there).
    """
    if not tpus:
        raise ValueError("Give at least one TPU VM name (--tpus=NAME[,NAME...]).")
    queues: dict[str, list[str]] = {tpu: [] for tpu in tpus}
    for i, point in enumerate(points):
        run = point_command(config, f"{workdir.rstrip('/')}/{point_name(point)}", point, "python3")
        queues[tpus[i % len(tpus)]].append(shlex.join(run))
    return [["gcloud", "compute", "tpus", "tpu-vm", "ssh", tpu, f"--zone={zone}", "--worker=all",
             f"--command=cd {repo_dir} && " + " && ".join(runs)] for tpu, runs in queues.items() if runs]


FLAGS = flags.FLAGS


def define_flags() -> None:
    """The command's flags; defined only when it runs, so that scripts can import this module."""
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
        from resnet_jax.sweep_results import collect
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
        from resnet_jax.sweep_results import collect
        collect(workdir, points)


if __name__ == "__main__":
    define_flags()
    app.run(main)
