r"""Experiment 4: degradation. Plain vs residual CIFAR-style nets at depths 20, 32, 44, 56, same
budget.

    # real digits: 15 min
    python -m experiments.degradation --dataset=mnist5k --steps=150 --batch_size=64
    python -m experiments.degradation --dataset=shapes32 --steps=300 --batch_size=128 --lr=0.2 \
        --warmup_steps=50 --zero_init_residual  # the embedded set: ~1 h
    # the paper's data: 17 min
    python -m experiments.degradation --dataset=cifar10 --depths=20,56 --steps=150

(CPU times: 2 cores, oneDNN convolutions; experiments/results/degradation_*/ has each point's wall
time. On a GPU, raise --steps: the CPU budgets above are a fraction of an epoch to a few epochs.)

He et al. (2015) report that deeper plain nets reach a *higher* training loss than shallower ones,
and deeper residual nets do not. The points are configs/sweeps/degradation.py's: each is one run of
the dataset's config with model.shortcut and model.depth overridden and nothing else changed, all on
the budget the flags give; runs resume if interrupted. Writes the sweep's table and plots to
experiments/results/degradation_<dataset>/ (training-loss curves, final loss and accuracy vs depth).
"""

from pathlib import Path

from absl import flags

from experiments.common import CONFIGS, run_sweep, short_budget, sweep_points
from resnet_jax import errors

FLAGS = flags.FLAGS
flags.DEFINE_enum("dataset", "shapes32", list(CONFIGS), "Which data set (and config) to train on.")
flags.DEFINE_list("depths", ["20", "32", "44", "56"], "Depths (6n+2).")
flags.DEFINE_integer("steps", 300, "Training steps per run (the budget; larger on a GPU).")
flags.DEFINE_integer("batch_size", 128, "Global batch size.")
flags.DEFINE_float("lr", 0.1, "Peak learning rate (the same for every run).")
flags.DEFINE_integer(
    "warmup_steps", None, "Linear warmup before the cosine decay; default steps // 20."
)
flags.DEFINE_integer("seed", 0, "Seed of every run.")
flags.DEFINE_bool(
    "zero_init_residual",
    False,
    "Add a third series: residual nets whose blocks start as "
    "identities (zero scale of each block's last BatchNorm, Goyal et al. 2017).",
)
flags.DEFINE_string("workdir", "/tmp/resnet_jax_experiments", "Where the runs train (resumable).")


def main(argv):
    del argv
    arg = "+".join(FLAGS.depths) + (",zero_init" if FLAGS.zero_init_residual else "")
    budget = short_budget(
        FLAGS.steps,
        batch_size=FLAGS.batch_size,
        lr=FLAGS.lr,
        seed=FLAGS.seed,
        warmup_steps=FLAGS.warmup_steps,
    )
    name = f"degradation_{FLAGS.dataset}"
    run_sweep(
        CONFIGS[FLAGS.dataset],
        sweep_points("degradation", arg),
        Path(FLAGS.workdir) / name,
        common=budget,
        name=name,
    )


if __name__ == "__main__":
    errors.run_absl(main)
