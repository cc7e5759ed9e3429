"""MNIST-5k: 5,000 MNIST digits from ../shared/data/mnist5k.npz, a fixed 4,000 / 1,000 train / eval split.

    python -m resnet_jax.main --config=configs/mnist5k.py --workdir=/tmp/runs/mnist5k

The split keeps 100 digits of each class for eval, chosen by data.split_seed. No augmentation (a flipped digit
is another digit). Expect eval accuracy about 0.979 in about 2.5 minutes on 2 CPU cores; see docs/training.md.
"""
import os

import ml_collections
from ml_collections.config_dict import placeholder

# ../shared/data beside the checkout (this file is <checkout>/configs/mnist5k.py).
SHARED_DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "data")


def get_config(arg=None):
    del arg  # no variants
    config = ml_collections.ConfigDict()
    config.model = dict(name="cifar_resnet", depth=8, width_multiplier=1.0, shortcut="A", zero_init_last=False,
                        # The stem and the downsampling, as experiments/stride_padding.py varies them.
                        stem_stride=1, stem_pool=False, stem_padding=placeholder(int), padding="symmetric",
                        stage_strides=(1, 2, 2))
    config.data = dict(name="npz", path=os.path.normpath(os.path.join(SHARED_DATA, "mnist5k.npz")),
                       data_dir=placeholder(str), manual_dir=placeholder(str), split_seed=0, eval_fraction=0.2,
                       image_size=placeholder(int), in_memory=placeholder(bool),
                       augment="none", batch_size=128, eval_batch_size=200, seed=0)
    config.optim = dict(name="sgd", lr=0.1, momentum=0.9, nesterov=False, beta2=0.999, weight_decay=5e-4,
                        exclude_bn_and_bias=False, schedule="cosine", warmup_steps=30, boundaries=(), scales=(),
                        label_smoothing=0.0, grad_clip=0.0, ema=0.0)
    config.train = dict(steps=500, eval_every=250, checkpoint_every=250, keep_checkpoints=2, log_every=25, seed=0,
                        parallel="single", dtype="float32",
                        conv_impl="auto")
    return config
