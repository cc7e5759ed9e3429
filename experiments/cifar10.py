"""Real data: CIFAR-10 beside the ResNet paper's figures, the degradation study on CIFAR-10, MNIST
sanity rows.

    python -m experiments.cifar10  # CPU budget: 2 epochs of ResNet-20, 150-step degradation
    python -m experiments.cifar10 --epochs=160 --degradation_steps=64000 --depths=20,32,44,56   #
    on a GPU

Every run is one command of the entry point (`resnet_jax.main`) in its own sub-workdir under
--workdir, run
through the sweep runner: resumable (an interrupted run continues from its checkpoint, a finished
one is skipped) and timed (wall seconds of the command, summed over attempts). The ResNet rows are
the points of configs/sweeps/depth.py on the short recipe, the degradation study those of
configs/sweeps/degradation.py. Reads ../shared/data (CIFAR-10 .npz, the official MNIST and
Fashion-MNIST archives through TFDS's own builders). Writes results/cifar10.{md,csv} and
results/degradation_cifar10/ (training-loss curves, table).
"""

from __future__ import annotations

import json
from pathlib import Path

from absl import flags

from experiments.common import CONFIGS, run_sweep, short_budget, sweep_points
from experiments.results_io import write_table
from resnet_jax import errors
from resnet_jax.sweeps.grid import STATUS_FILE
from resnet_jax.sweeps.launch import run_local
from resnet_jax.sweeps.results import final, read_metrics

FLAGS = flags.FLAGS
flags.DEFINE_integer(
    "epochs", 2, "Epochs of ResNet-20 on CIFAR-10 (the short recipe: warmup + cosine)."
)
flags.DEFINE_bool(
    "resnet56", False, "Also train ResNet-56 for --epochs (about 4x ResNet-20's time)."
)
flags.DEFINE_integer("mnist_epochs", 1, "Epochs of the MNIST and Fashion-MNIST sanity rows.")
flags.DEFINE_integer(
    "degradation_steps", 150, "Steps of each plain/residual net in the degradation study."
)
flags.DEFINE_list("depths", ["20", "56"], "Depths of the degradation study.")
flags.DEFINE_string("workdir", "/tmp/resnet_jax_experiments", "Where the runs train (resumable).")

# He et al. 2015, Table 6: CIFAR-10 test error after 64k iterations of batch 128 (about 164 epochs).
PAPER_ERROR = {
    "resnet20": 8.75,
    "resnet32": 7.51,
    "resnet44": 7.17,
    "resnet56": 6.97,
    "resnet110": 6.43,
}
STEPS_PER_EPOCH = {"cifar10": 50_000 // 128, "mnist": 60_000 // 128, "fashion_mnist": 60_000 // 128}


def train(config: str, points: list[dict], workdir: Path) -> list[dict]:
    """Run (or resume, or skip) each point of one config; their final metrics, steps and wall
    minutes."""
    results = []
    for directory in run_local(config, points, workdir):
        rows = read_metrics(directory / "metrics.jsonl")
        status = json.loads((directory / STATUS_FILE).read_text())
        results.append(
            {
                "steps": max(rows),
                "eval/accuracy": final(rows, "eval/accuracy"),
                "train/loss": final(rows, "train/loss"),
                "minutes": status.get("seconds", 0) / 60,
            }
        )
    return results


def main(argv):
    del argv
    workdir = Path(FLAGS.workdir) / "cifar10"
    # (data set, steps-per-epoch key, model, paper's key, config, point): the ResNets are the depth
    # sweep's points.
    resnet = f"configs/cifar10.py:resnet20,epochs={FLAGS.epochs}"
    runs = [
        (
            "CIFAR-10",
            "cifar10",
            f"ResNet-{p['model.depth']}",
            f"resnet{p['model.depth']}",
            resnet,
            p,
        )
        for p in sweep_points("depth", "20+56" if FLAGS.resnet56 else "20")
    ]
    for dataset, key in (("MNIST", "mnist"), ("Fashion-MNIST", "fashion_mnist")):
        runs.append(
            (
                dataset,
                key,
                "ResNet-8",
                None,
                f"configs/mnist.py:{key},epochs={FLAGS.mnist_epochs}",
                {},
            )
        )
    rows = []
    for dataset, key, model, paper_key, config, point in runs:
        name = config.split(":")[1].replace(",", "_").replace("=", "")  # e.g. resnet20_epochs2
        [result] = train(config, [point], workdir / f"{key}_{name}")
        accuracy = result["eval/accuracy"]
        paper = PAPER_ERROR.get(paper_key)
        overrides = "".join(f" --config.{k}={v}" for k, v in point.items())
        rows.append(
            [
                dataset,
                model,
                f"`{config}{overrides}`",
                f"{result['steps'] / STEPS_PER_EPOCH[key]:.0f}",
                f"{100 * accuracy:.2f}%",
                f"{100 * (1 - accuracy):.2f}%",
                f"{paper:.2f}% (~164 epochs)" if paper else "-",
                f"{result['train/loss']:.3f}",
                f"{result['minutes']:.1f}",
            ]
        )
    header = [
        "data",
        "model",
        "config",
        "epochs",
        "test accuracy",
        "test error",
        "paper's test error",
        "final train loss",
        "wall min (2 CPU cores)",
    ]
    command = (
        f"python -m experiments.cifar10 --epochs={FLAGS.epochs} "
        f"--mnist_epochs={FLAGS.mnist_epochs} "
        f"--degradation_steps={FLAGS.degradation_steps} --depths={','.join(FLAGS.depths)}"
        + (" --resnet56" if FLAGS.resnet56 else "")
    )
    notes = (
        "Test accuracy on the full test split (10,000 images) after the epochs shown. CIFAR-10: "
        "the paper's "
        "optimiser and data (SGD 0.1, momentum 0.9, weight decay 1e-4, batch 128, pad-4 crop + "
        "flip, "
        "per-channel normalisation) with the short schedule (linear warmup over 5% of steps, "
        "cosine to 0). "
        "The paper trains 64k iterations (about 164 epochs) with step decay: its figures stand "
        "beside ours "
        "for scale, not as a like-for-like comparison. MNIST and Fashion-MNIST: the default "
        "config's "
        "ResNet-8, SGD 0.1, weight decay 5e-4, no augmentation, warmup + cosine. One run each, "
        "seed 0."
    )
    print(write_table("cifar10", header, rows, command=command, notes=notes).read_text())
    run_sweep(
        CONFIGS["cifar10"],
        sweep_points("degradation", "+".join(FLAGS.depths)),
        Path(FLAGS.workdir) / "degradation_cifar10",
        common=short_budget(FLAGS.degradation_steps, batch_size=128, lr=0.1, seed=0),
        name="degradation_cifar10",
    )


if __name__ == "__main__":
    errors.run_absl(main)
