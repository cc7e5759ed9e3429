"""What the training experiments share: each data set's config, the repository's sweep files, a
short budget."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from experiments.results_io import publish
from resnet_jax.sweeps.grid import expand, load_function
from resnet_jax.sweeps.launch import run_local
from resnet_jax.sweeps.results import collect

# The config each --dataset trains with (paths as the commands are run: from the repository root).
CONFIGS = {
    "shapes32": "configs/default.py",
    "mnist5k": "configs/mnist5k.py",
    "cifar10": "configs/cifar10.py:resnet20",
}
SWEEPS = Path(__file__).resolve().parents[1] / "configs" / "sweeps"


def sweep_points(name: str, arg: str | None = None) -> list[dict[str, Any]]:
    """The points of configs/sweeps/NAME.py's get_sweep(arg)."""
    get_sweep, _ = load_function(str(SWEEPS / f"{name}.py"), "get_sweep")
    return expand(get_sweep(arg))


def short_budget(
    steps: int, *, batch_size: int, lr: float, seed: int, warmup_steps: int | None = None
) -> dict:
    """Overrides that give every run the same budget: linear warmup (default steps // 20), cosine
    to 0, one eval."""
    return {
        "train.steps": steps,
        "train.eval_every": steps,
        "train.checkpoint_every": 100,
        "train.log_every": 10,
        "data.batch_size": batch_size,
        "optim.lr": lr,
        "optim.schedule": "cosine",
        "optim.warmup_steps": max(1, steps // 20) if warmup_steps is None else warmup_steps,
        "optim.boundaries": (),
        "optim.scales": (),
        "train.seed": seed,
    }


def run_sweep(
    config: str, points: Sequence[dict], workdir: Path, *, common: Mapping[str, Any], name: str
) -> list[dict]:
    """Train every point in workdir (resumable), then publish its table and plots as
    results/NAME/."""
    run_local(config, points, workdir, common=common)
    table = collect(workdir, points)
    publish(workdir, name)
    return table
