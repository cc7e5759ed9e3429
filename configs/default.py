"""The default run: a small CIFAR-style ResNet on shapes32, the data set the project generates
itself.

    python -m resnet_jax.main --config=configs/default.py --workdir=/tmp/runs/default

The README's results table has the eval accuracy (chance is 0.1) and wall time it reaches.
Any field can be overridden: --config.optim.lr=0.2 --config.train.steps=1000.
"""

import os
import runpy

# configs/base.py, read from beside this file (configs are files loaded by path, not a package).
base = runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)), "base.py"))


def get_config(arg=None):
    if arg:
        raise ValueError(f"configs/default.py:{arg}: this config has no variants; drop ':{arg}'")
    config = base["get_config"]()  # the base's values are this run's
    return config
