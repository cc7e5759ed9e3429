"""CIFAR-10 with the ResNets and plain nets of He et al. 2015 (section 4.2): the paper's recipe, or a short one.

    python -m resnet_jax.main --config=configs/cifar10.py:resnet20 --workdir=/tmp/runs/cifar10_resnet20
    python -m resnet_jax.main --config=configs/cifar10.py:resnet20,epochs=2 --workdir=/tmp/runs/c10_r20_e2

Variants by arg: resnet20, resnet32, resnet44, resnet56, resnet110 (shortcut A) and plain20 ... plain110.
The paper's recipe: SGD lr 0.1, momentum 0.9, weight decay 1e-4 (on every weight, as in the paper), batch 128,
64k steps with lr / 10 at 32k and 48k; 4-pixel pad, random 32x32 crop and horizontal flip; per-channel
normalisation. ResNet-110 starts at lr 0.01 until step 400, then 0.1 (the paper's warm-up). Unlike the paper
we train on all 50k images (no 45k/5k split) and report the test set. Paper test error: resnet20 8.75%,
resnet56 6.97%, resnet110 6.43%. On 2 CPU cores this takes days; on one GPU tens of minutes.

",epochs=N" is the short budget for a CPU: the same optimiser, data and augmentation, N epochs (390 steps of
128 each) with a linear warmup over the first 5% of steps and a cosine decay to 0, evaluated every epoch.
experiments/results/cifar10.md has what it reaches (ResNet-20, 2 epochs: see there; about 15 min here).

Data: data.path is ../shared/data/cifar10 (train.npz, test.npz) beside the checkout. For TFDS's prepared
'cifar10' instead: --config.data.name=cifar10 --config.data.path= (empty) [--config.data.data_dir=DIR].
"""
import os
import re

import ml_collections
from ml_collections.config_dict import placeholder

# ../shared/data beside the checkout (this file is <checkout>/configs/cifar10.py).
SHARED_DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "data")
VARIANT = re.compile(r"^(?P<kind>resnet|plain)(?P<depth>20|32|44|56|110)(,epochs=(?P<epochs>[1-9][0-9]*))?$")
TRAIN_IMAGES = 50_000
BATCH_SIZE = 128


def get_config(arg="resnet20"):
    match = VARIANT.match(arg or "resnet20")
    if match is None:
        raise ValueError(f"configs/cifar10.py:{arg}: use resnet20|32|44|56|110 or plain20|32|44|56|110, then "
                         f"optionally ',epochs=N' for the short recipe.")
    depth = int(match["depth"])
    steps_per_epoch = TRAIN_IMAGES // BATCH_SIZE  # 390: the partial last batch of an epoch is dropped
    config = ml_collections.ConfigDict()
    config.model = dict(name=f"cifar_{match['kind']}", depth=depth, width_multiplier=1.0,
                        shortcut="A" if match["kind"] == "resnet" else "none", zero_init_last=False)
    config.data = dict(name="npz", path=os.path.normpath(os.path.join(SHARED_DATA, "cifar10")),
                       data_dir=placeholder(str), manual_dir=placeholder(str), split_seed=0,
                       eval_fraction=placeholder(float), image_size=placeholder(int), in_memory=placeholder(bool),
                       augment="cifar", batch_size=BATCH_SIZE, eval_batch_size=1000, seed=0)
    config.optim = dict(name="sgd", lr=0.1, momentum=0.9, nesterov=False, beta2=0.999, weight_decay=1e-4,
                        exclude_bn_and_bias=False, schedule="step", warmup_steps=0, boundaries=(32_000, 48_000),
                        scales=(0.1, 0.1), label_smoothing=0.0, grad_clip=0.0, ema=0.0)
    config.train = dict(steps=64_000, eval_every=2_000, checkpoint_every=2_000, keep_checkpoints=3, log_every=100,
                        seed=0, parallel="single", dtype="float32",
                        conv_impl="auto")
    if match["epochs"]:  # the short recipe: warmup + cosine over N epochs, an eval each epoch
        steps = int(match["epochs"]) * steps_per_epoch
        config.optim.update(schedule="cosine", warmup_steps=steps // 20, boundaries=(), scales=())
        config.train.update(steps=steps, eval_every=steps_per_epoch, checkpoint_every=100, log_every=10)
    elif depth == 110:  # the paper's warm-up: lr 0.01 until step 400, then 0.1
        config.optim.update(lr=0.01, boundaries=(400, 32_000, 48_000), scales=(10.0, 0.1, 0.1))
    return config
