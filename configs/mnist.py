"""MNIST and Fashion-MNIST through TFDS's own builders, prepared offline from the official archives.

    python -m resnet_jax.main --config=configs/mnist.py:mnist --workdir=/tmp/runs/mnist
    python -m resnet_jax.main --config=configs/mnist.py:fashion_mnist,epochs=2
    --workdir=/tmp/runs/fashion_mnist

A sanity row beside CIFAR-10: the small CIFAR-style ResNet of the default config (depth 8, 16/32/64
channels) on the full 60,000 / 10,000 split, 1 epoch by default (",epochs=N" for more), warmup +
cosine, no augmentation (a flipped digit is another digit). TFDS prepares the data set into
data.data_dir (TFDS's default, ~/tensorflow_datasets, when unset) from the four .gz archives in
data.manual_dir, which defaults to ../shared/data/<name> beside the checkout; nothing is downloaded.
On a machine with internet, prepare it once with `tfds build mnist` and pass
--config.data.manual_dir= (empty). Results: experiments/results/cifar10.md.
"""

import os
import re
import runpy

# configs/base.py, read from beside this file (configs are files loaded by path, not a package).
base = runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)), "base.py"))
VARIANT = re.compile(r"^(?P<name>mnist|fashion_mnist)(,epochs=(?P<epochs>[1-9][0-9]*))?$")
TRAIN_IMAGES = 60_000
BATCH_SIZE = 128


def get_config(arg="mnist"):
    match = VARIANT.match(arg or "mnist")
    if match is None:
        raise ValueError(
            f"configs/mnist.py:{arg}: use mnist or fashion_mnist, then optionally ',epochs=N'."
        )
    steps_per_epoch = TRAIN_IMAGES // BATCH_SIZE  # 468
    steps = int(match["epochs"] or 1) * steps_per_epoch
    config = base["get_config"]()  # the default run's ResNet-8
    config.data.update(
        name=match["name"],
        manual_dir=base["shared_data"](match["name"]),
        augment="none",
        batch_size=BATCH_SIZE,
        eval_batch_size=1000,
    )
    config.optim.update(lr=0.1, warmup_steps=steps // 20)
    config.train.update(steps=steps, eval_every=steps_per_epoch, keep_checkpoints=2)
    return config
