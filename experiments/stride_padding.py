"""Experiment 5: stride and padding of the stem and of the downsampling: accuracy, params, FLOPs,
throughput.

    python -m experiments.stride_padding --depth=8 --steps=200           # embedded set, CPU: 12 min
    python -m experiments.stride_padding --dataset=mnist5k --depth=8 --steps=200

The points are configs/sweeps/stride_padding.py's: variants of the default model (a CIFAR-style
ResNet on 32x32 inputs), one field changed each against the baseline (3x3 stem, stride 1, no pool,
stages at strides 1/2/2, symmetric padding). Same budget and seed for every run. Writes
experiments/results/stride_padding_<dataset>/ (table with params, GMACs, images/s).
"""

from pathlib import Path

from absl import flags

from experiments.common import CONFIGS, run_sweep, sweep_points
from resnet_jax import errors

# The data sets whose configs have the stem and downsampling fields this sweep varies (cifar10.py
# has not).
DATASETS = ["shapes32", "mnist5k"]
FLAGS = flags.FLAGS
flags.DEFINE_enum("dataset", "shapes32", DATASETS, "Which data set (and config) to train on.")
flags.DEFINE_integer("steps", 300, "Training steps per run.")
flags.DEFINE_integer("depth", 20, "Depth of the CIFAR ResNet (6n+2).")
flags.DEFINE_integer("seed", 0, "Seed of every run.")
flags.DEFINE_string("workdir", "/tmp/resnet_jax_experiments", "Where the runs train (resumable).")


def main(argv):
    del argv
    common = {
        "model.depth": FLAGS.depth,
        "train.steps": FLAGS.steps,
        "train.eval_every": FLAGS.steps,
        "train.checkpoint_every": 100,
        "train.log_every": 10,
        "train.seed": FLAGS.seed,
    }
    name = f"stride_padding_{FLAGS.dataset}"
    run_sweep(
        CONFIGS[FLAGS.dataset],
        sweep_points("stride_padding"),
        Path(FLAGS.workdir) / name,
        common=common,
        name=name,
    )


if __name__ == "__main__":
    errors.run_absl(main)
