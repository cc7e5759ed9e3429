"""MNIST and Fashion-MNIST through TFDS's own builders, prepared offline from the official archives.

    python -m resnet_jax.main --config=configs/mnist.py:mnist --workdir=/tmp/runs/mnist
    python -m resnet_jax.main --config=configs/mnist.py:fashion_mnist,epochs=2 --workdir=/tmp/runs/fashion_mnist

A sanity row beside CIFAR-10: the small CIFAR-style ResNet of the default config (depth 8, 16/32/64 channels)
on the full 60,000 / 10,000 split, 1 epoch by default (",epochs=N" for more), warmup + cosine, no augmentation
(a flipped digit is another digit). TFDS prepares the data set into data.data_dir (TFDS's default,
~/tensorflow_datasets, when unset) from the four .gz archives in data.manual_dir, which defaults to
../shared/data/<name> beside the checkout; nothing is downloaded. On a machine with internet, prepare it once
with `tfds build mnist` and pass --config.data.manual_dir= (empty). Results: experiments/results/cifar10.md.
"""
import os
import re

import ml_collections
from ml_collections.config_dict import placeholder

# ../shared/data beside the checkout (this file is <checkout>/configs/mnist.py).
SHARED_DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "data")
VARIANT = re.compile(r"^(?P<name>mnist|fashion_mnist)(,epochs=(?P<epochs>[1-9][0-9]*))?$")
TRAIN_IMAGES = 60_000
BATCH_SIZE = 128


def get_config(arg="mnist"):
    match = VARIANT.match(arg or "mnist")
    if match is None:
        raise ValueError(f"configs/mnist.py:{arg}: use mnist or fashion_mnist, then optionally ',epochs=N'.")
    steps_per_epoch = TRAIN_IMAGES // BATCH_SIZE  # 468
    steps = int(match["epochs"] or 1) * steps_per_epoch
    config = ml_collections.ConfigDict()
    config.model = dict(name="cifar_resnet", depth=8, width_multiplier=1.0, shortcut="A", zero_init_last=False)
    config.data = dict(name=match["name"], path=placeholder(str), data_dir=placeholder(str),
                       manual_dir=os.path.normpath(os.path.join(SHARED_DATA, match["name"])), split_seed=0,
                       eval_fraction=placeholder(float), image_size=placeholder(int), in_memory=placeholder(bool),
                       augment="none", batch_size=BATCH_SIZE, eval_batch_size=1000, seed=0)
    config.optim = dict(name="sgd", lr=0.1, momentum=0.9, nesterov=False, beta2=0.999, weight_decay=5e-4,
                        exclude_bn_and_bias=False, schedule="cosine", warmup_steps=steps // 20, boundaries=(),
                        scales=(), label_smoothing=0.0, grad_clip=0.0, ema=0.0)
    config.train = dict(steps=steps, eval_every=steps_per_epoch, checkpoint_every=100, keep_checkpoints=2,
                        log_every=20, seed=0, parallel="single", dtype="float32",
                        conv_impl="auto")
    return config
