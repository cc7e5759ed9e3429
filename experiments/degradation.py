"""Experiment 4: degradation. Plain vs residual CIFAR-style nets at depths 20, 32, 44, 56, same budget.

    python -m experiments.degradation --dataset=mnist5k --steps=150 --batch_size=64    # real digits: 15 min
    python -m experiments.degradation --dataset=shapes32 --steps=300 --batch_size=128 --lr=0.2 \
        --warmup_steps=50 --zero_init_residual                                          # the embedded set: ~1 h
    python -m experiments.degradation --dataset=cifar10 --depths=20,56 --steps=150     # the paper's data: 17 min

(CPU times: 2 cores, oneDNN convolutions; experiments/results/degradation_*/ has each point's wall time. On a
GPU, raise --steps: the CPU budgets above are a fraction of an epoch to a few epochs.)

He et al. (2015) report that deeper plain nets reach a *higher* training loss than shallower ones, and
deeper residual nets do not. Each point is one run of the dataset's config with model.shortcut and model.depth
overridden and nothing else changed; runs resume if interrupted. Writes the sweep's table and plots to
experiments/results/degradation_<dataset>/ (training-loss curves, final loss and accuracy vs depth).
"""
import shutil
import sys
from pathlib import Path

from absl import app, flags

from experiments.results_io import RESULTS
from resnet_jax.sweep import expand, run_local
from resnet_jax.sweep_results import collect

CONFIGS = {"shapes32": "configs/default.py", "mnist5k": "configs/mnist5k.py", "cifar10": "configs/cifar10.py:resnet20"}
FLAGS = flags.FLAGS


def define_flags():
    """The command's flags; defined only when it runs, so that other experiments can import this one."""
    flags.DEFINE_enum("dataset", "shapes32", list(CONFIGS), "Which data set (and config) to train on.")
    flags.DEFINE_list("depths", ["20", "32", "44", "56"], "Depths (6n+2).")
    flags.DEFINE_integer("steps", 300, "Training steps per run (the budget; larger on a GPU).")
    flags.DEFINE_integer("batch_size", 128, "Global batch size.")
    flags.DEFINE_float("lr", 0.1, "Peak learning rate (the same for every run).")
    flags.DEFINE_integer("warmup_steps", None, "Linear warmup before the cosine decay; default steps // 20.")
    flags.DEFINE_integer("seed", 0, "Seed of every run.")
    flags.DEFINE_bool("zero_init_residual", False, "Add a third series: residual nets whose blocks start as "
                      "identities (zero scale of each block's last BatchNorm, Goyal et al. 2017).")
    flags.DEFINE_string("workdir", "/tmp/resnet_jax_experiments", "Where the runs train (resumable).")


def main(argv):
    del argv
    degradation(FLAGS.dataset, depths=[int(d) for d in FLAGS.depths], steps=FLAGS.steps,
                batch_size=FLAGS.batch_size, lr=FLAGS.lr, warmup_steps=FLAGS.warmup_steps, seed=FLAGS.seed,
                workdir=Path(FLAGS.workdir), zero_init_residual=FLAGS.zero_init_residual)


def degradation(dataset: str, *, depths, steps: int, batch_size: int, lr: float, seed: int, workdir: Path,
                warmup_steps: int | None = None, zero_init_residual: bool = False) -> list:
    """Train plain and residual nets at each depth on the same budget (resumable); publish and return the table."""
    # Plain = no shortcuts; residual = the paper's option A. The configs name cifar_resnet and set the shortcut.
    points = expand({"model.shortcut": ["none", "A"], "model.depth": list(depths)})
    if zero_init_residual:  # (a plain net with zeroed last BatchNorms would output zeros: residual nets only)
        points += expand({"model.shortcut": ["A"], "model.zero_init_last": [True], "model.depth": list(depths)})
    schedule = {"train.steps": steps, "train.eval_every": steps, "train.checkpoint_every": 100,
                "train.log_every": 10, "data.batch_size": batch_size, "optim.lr": lr,
                "optim.schedule": "cosine",
                "optim.warmup_steps": max(1, steps // 20) if warmup_steps is None else warmup_steps,
                "optim.boundaries": (), "optim.scales": (), "train.seed": seed}
    workdir = workdir / f"degradation_{dataset}"
    run_local(CONFIGS[dataset], points, workdir, common=schedule)
    table = collect(workdir, points)
    publish(workdir, f"degradation_{dataset}")
    return table


def publish(workdir: Path, name: str) -> None:
    """Copy the sweep's table and plots into experiments/results/NAME/; the table starts with this command."""
    target = RESULTS / name
    target.mkdir(parents=True, exist_ok=True)
    module = Path(sys.argv[0]).stem
    command = " ".join(["python -m experiments." + module, *sys.argv[1:]])
    table = (workdir / "results.md").read_text()
    (target / "results.md").write_text(f"Command: `{command}`\n\n{table}")
    shutil.copy(workdir / "results.csv", target)
    for path in workdir.glob("*.png"):
        shutil.copy(path, target)
    print(f"results in {target}")


if __name__ == "__main__":
    define_flags()
    app.run(main)
