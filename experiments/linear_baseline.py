"""The linear baseline of the embedded set: ridge regression on raw pixels of shapes32, beside the
ResNet.

    python -m experiments.linear_baseline

The same 20,000 train / 2,000 test images that `configs/default.py` trains on (shapes32.generate
with the builder's seeds). Least squares from the pixels (centred, in [0, 1]) to one-hot labels, for
several ridge penalties; the best penalty is chosen on the test set, which only flatters the linear
model. Shapes sit at random positions in random colours, so no fixed weighting of pixels can find
them: a linear model should stay near chance (10%) where a small ResNet reaches ~97% (README).
Writes results/linear_baseline.{md,csv}.
"""

import time

import numpy as np

from experiments.results_io import write_table
from resnet_jax import errors
from resnet_jax.data import shapes32

COMMAND = "python -m experiments.linear_baseline"
PENALTIES = (0.1, 10.0, 1e3, 1e4, 1e5)


def main(argv):
    errors.no_arguments(argv)
    start = time.perf_counter()
    config = shapes32.Shapes32.BUILDER_CONFIGS[0]
    train_images, train_labels = shapes32.generate(config.num_train, seed=(config.seed, 0))
    test_images, test_labels = shapes32.generate(config.num_test, seed=(config.seed, 1))
    x = train_images.reshape(len(train_images), -1).astype(np.float64) / 255.0  # [20000, 3072]
    mean = x.mean(axis=0)
    x -= mean
    x_test = test_images.reshape(len(test_images), -1).astype(np.float64) / 255.0 - mean
    targets = np.eye(10)[train_labels]
    gram, moments = x.T @ x, x.T @ targets  # [3072, 3072], [3072, 10]
    rows = []
    for penalty in PENALTIES:
        weights = np.linalg.solve(gram + penalty * np.eye(len(gram)), moments)
        train_accuracy = np.mean(np.argmax(x @ weights, axis=1) == train_labels)
        test_accuracy = np.mean(np.argmax(x_test @ weights, axis=1) == test_labels)
        rows.append([f"{penalty:g}", f"{100 * train_accuracy:.1f}%", f"{100 * test_accuracy:.1f}%"])
    notes = (
        f"shapes32, {config.num_train:,} train / {config.num_test:,} test images, 3,072 raw pixels "
        "each; "
        f"chance is 10%. {time.perf_counter() - start:.0f} s on 2 CPU cores."
    )
    print(
        write_table(
            "linear_baseline",
            ["ridge penalty", "train accuracy", "test accuracy"],
            rows,
            command=COMMAND,
            notes=notes,
        ).read_text()
    )


if __name__ == "__main__":
    errors.run_absl(main)  # no flags of its own: --help only helps
