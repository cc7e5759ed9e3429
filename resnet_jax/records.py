"""What a run writes about itself beside its checkpoints: config.json, run.json (the git revision,
the command, the devices) and model_summary.json (parameters and MACs, which sweeps collect)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jax
import ml_collections
from absl import logging
from etils import epath

from resnet_jax.nn import trace
from resnet_jax.training import paths


def write_run_info(workdir: str | epath.Path, config: ml_collections.ConfigDict) -> None:
    """Write config.json and run.json (git revision, command, devices) into workdir; warn if the
    config changed."""
    if jax.process_index() != 0:
        return
    workdir = paths.run_path(workdir)
    paths.make_dirs(workdir)
    config_path = workdir / "config.json"
    if config_path.exists() and _run_defining(json.loads(config_path.read_text())) != _run_defining(
        json.loads(config.to_json())
    ):
        logging.warning(
            "The config differs from the one this workdir was started with (%s); the new one "
            "is recorded, the checkpoint state is resumed as saved.",
            config_path,
        )
    paths.write_text(config_path, config.to_json(indent=2))
    paths.write_text(
        workdir / "run.json",
        json.dumps(
            {
                "git_revision": git_revision(),
                "command": sys.argv,
                "jax": jax.__version__,
                "devices": [str(d) for d in jax.devices()],
                "processes": jax.process_count(),
            },
            indent=2,
        ),
    )


def _run_defining(fields: dict) -> dict:
    """A config as JSON without train.stop_after: where a run pauses is not part of what it
    computes."""
    return {**fields, "train": {k: v for k, v in fields["train"].items() if k != "stop_after"}}


def write_model_summary(
    workdir: str | epath.Path, rows: list[trace.LayerRow], image_shape: tuple[int, int, int]
) -> None:
    """model_summary.json: parameters and MACs per image from the per-layer trace (sweeps collect
    it)."""
    params, macs = trace.totals(rows)
    workdir = paths.run_path(workdir)
    paths.make_dirs(workdir)
    paths.write_text(
        workdir / "model_summary.json",
        json.dumps({"params": params, "macs": macs, "input_shape": list(image_shape)}),
    )


def git_revision() -> str | None:
    """HEAD of the checkout that holds this file, with '-dirty' for uncommitted changes; outside
    git, the commit in the REVISION file the TPU launcher writes beside the unpacked code; else
    None."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        revision = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=repo,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return revision + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        try:
            with open(os.path.join(repo, "REVISION")) as f:
                return f.read().strip() or None
        except OSError:
            return None


def flat_fields(config: ml_collections.ConfigDict) -> dict:
    """The config as {'optim.lr': 0.1, ...}, one entry per field (what TensorBoard's HParams
    lists)."""

    def walk(prefix, tree):
        for key, value in tree.items():
            if isinstance(value, dict):
                yield from walk(f"{prefix}{key}.", value)
            else:
                yield f"{prefix}{key}", value

    return dict(walk("", config.to_dict()))
