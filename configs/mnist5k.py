"""MNIST-5k: 5,000 MNIST digits from ../shared/data/mnist5k.npz, a fixed 4,000 / 1,000 train / eval
split.

    python -m resnet_jax.main --config=configs/mnist5k.py --workdir=/tmp/runs/mnist5k

The split keeps 100 digits of each class for eval, chosen by data.split_seed. No augmentation (a
flipped digit is another digit). The README's results table has the eval accuracy and wall time it
reaches.
"""

import os
import runpy

# configs/base.py, read from beside this file (configs are files loaded by path, not a package).
base = runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)), "base.py"))


def get_config(arg=None):
    if arg:
        raise ValueError(f"configs/mnist5k.py:{arg}: this config has no variants; drop ':{arg}'")
    config = base["get_config"]()
    config.data.update(
        name="npz",
        path=base["shared_data"]("mnist5k.npz"),
        eval_fraction=0.2,
        augment="none",
        eval_batch_size=200,
    )
    config.optim.update(lr=0.1, warmup_steps=30)
    config.train.update(
        steps=500, eval_every=250, checkpoint_every=250, keep_checkpoints=2, log_every=25
    )
    return config
