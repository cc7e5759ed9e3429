"""CIFAR-10 with the ResNets and plain nets of He et al. 2015 (section 4.2), the paper's recipe.

    python -m resnet_jax.main --config=configs/cifar10.py:resnet20 --workdir=/tmp/runs/cifar10_resnet20

Variants by arg: resnet20, resnet32, resnet44, resnet56, resnet110 (shortcut A) and plain20 ... plain110.
Recipe: SGD lr 0.1, momentum 0.9, weight decay 1e-4 (on every weight, as in the paper), batch 128, 64k steps
with lr / 10 at 32k and 48k; 4-pixel pad, random 32x32 crop and horizontal flip; per-channel normalisation.
ResNet-110 starts at lr 0.01 until step 400, then 0.1 (the paper's warm-up). Unlike the paper we train on all
50k images (no 45k/5k split) and report the test set. Paper test error: resnet20 8.75%, resnet56 6.97%,
resnet110 6.43%. On 2 CPU cores this takes days; on one GPU tens of minutes.

Data: data.path is ../shared/data/cifar10 (train.npz, test.npz) beside the checkout. For TFDS's prepared
'cifar10' instead: --config.data.name=cifar10 --config.data.path= (empty) [--config.data.data_dir=DIR].
"""
import os
import re

import ml_collections
from ml_collections.config_dict import placeholder

# ../shared/data beside the checkout (this file is <checkout>/configs/cifar10.py).
SHARED_DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "data")
VARIANT = re.compile(r"^(?P<kind>resnet|plain)(?P<depth>20|32|44|56|110)$")


def get_config(arg="resnet20"):
    match = VARIANT.match(arg or "resnet20")
    if match is None:
        raise ValueError(f"configs/cifar10.py:{arg}: use resnet20|32|44|56|110 or plain20|32|44|56|110.")
    depth = int(match["depth"])
    config = ml_collections.ConfigDict()
    config.model = dict(name=f"cifar_{match['kind']}", depth=depth, width_multiplier=1.0,
                        shortcut="A" if match["kind"] == "resnet" else "none", zero_init_last=False)
    config.data = dict(name="npz", path=os.path.normpath(os.path.join(SHARED_DATA, "cifar10")),
                       data_dir=placeholder(str), manual_dir=placeholder(str), split_seed=0,
                       eval_fraction=placeholder(float), image_size=placeholder(int), in_memory=placeholder(bool),
                       augment="cifar", batch_size=128, eval_batch_size=1000, seed=0)
    # The paper's lr 0.1, / 10 at 32k and 48k; ResNet-110 begins at 0.01 (x10 at step 400).
    lr, boundaries, scales = (0.01, (400, 32_000, 48_000), (10.0, 0.1, 0.1)) if depth == 110 else \
        (0.1, (32_000, 48_000), (0.1, 0.1))
    config.optim = dict(name="sgd", lr=lr, momentum=0.9, nesterov=False, beta2=0.999, weight_decay=1e-4,
                        exclude_bn_and_bias=False, schedule="step", warmup_steps=0, boundaries=boundaries,
                        scales=scales, label_smoothing=0.0, grad_clip=0.0, ema=0.0)
    config.train = dict(steps=64_000, eval_every=2_000, checkpoint_every=2_000, keep_checkpoints=3, log_every=100,
                        seed=0, parallel="single", dtype="float32")
    return config
