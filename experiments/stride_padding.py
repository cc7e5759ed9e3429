"""Experiment 5: stride and padding of the stem and of the downsampling: accuracy, params, FLOPs, throughput.

    python -m experiments.stride_padding --depth=8 --steps=200           # embedded set, CPU: 12 min
    python -m experiments.stride_padding --dataset=mnist5k --depth=8 --steps=200

Variants of the default model (a CIFAR-style ResNet on 32x32 inputs), one field changed each against the
baseline (3x3 stem, stride 1, no pool, stages at strides 1/2/2, symmetric padding). Same budget and seed for
every run. Writes experiments/results/stride_padding_<dataset>/ (table with params, GMACs, images/s).
"""
from pathlib import Path

from absl import app, flags

from experiments.degradation import CONFIGS, publish
from resnet_jax.sweep import run_local
from resnet_jax.sweep_results import collect

FLAGS = flags.FLAGS


def define_flags():
    """The command's flags; defined only when it runs, so that other experiments can import this one."""
    flags.DEFINE_enum("dataset", "shapes32", list(CONFIGS), "Which data set (and config) to train on.")
    flags.DEFINE_integer("steps", 300, "Training steps per run.")
    flags.DEFINE_integer("depth", 20, "Depth of the CIFAR ResNet (6n+2).")
    flags.DEFINE_integer("seed", 0, "Seed of every run.")
    flags.DEFINE_string("workdir", "/tmp/resnet_jax_experiments", "Where the runs train (resumable).")

VARIANTS = [
    {"variant": "baseline"},
    {"variant": "stem stride 2", "model.stem_stride": 2},
    {"variant": "stem stride 2 + max-pool", "model.stem_stride": 2, "model.stem_pool": True},
    {"variant": "stem padding 0 (32->30)", "model.stem_padding": 0},
    {"variant": "XLA 'same' padding", "model.padding": "same"},
    {"variant": "downsample early (2,2,1)", "model.stage_strides": (2, 2, 1)},
    {"variant": "downsample late (1,1,2)", "model.stage_strides": (1, 1, 2)},
    {"variant": "no downsampling (1,1,1)", "model.stage_strides": (1, 1, 1)},
]


def main(argv):
    del argv
    common = {"model.depth": FLAGS.depth, "train.steps": FLAGS.steps, "train.eval_every": FLAGS.steps,
              "train.checkpoint_every": 100, "train.log_every": 10, "train.seed": FLAGS.seed}
    points = [{k: v for k, v in variant.items() if k != "variant"} for variant in VARIANTS]
    workdir = Path(FLAGS.workdir) / f"stride_padding_{FLAGS.dataset}"
    run_local(CONFIGS[FLAGS.dataset], points, workdir, common=common)
    collect(workdir, points)
    publish(workdir, f"stride_padding_{FLAGS.dataset}")


if __name__ == "__main__":
    define_flags()
    app.run(main)
