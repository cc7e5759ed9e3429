"""Input pipelines: TFDS data sets, local files (.npz, image folders) and the embedded shapes32, as
batches.

    from resnet_jax import data
    dataset = data.load("shapes32")
    for batch in data.train_batches(dataset, batch_size=128, seed=0, augment="cifar"):
        ...

`pipeline.py` holds the batching (resumable, sharded per process); `local.py` reads files,
`shapes32.py` generates the embedded set, `augment.py` has the per-image TensorFlow preprocessing.
"""

from resnet_jax.data.augment import parse_auto_augment
from resnet_jax.data.pipeline import (
    AUGMENTATIONS,
    AUTO_AUGMENTATIONS,
    NORMALISATION,
    Dataset,
    DatasetInfo,
    DataShape,
    eval_batches,
    load,
    shape_of,
    train_batches,
)

__all__ = [
    "parse_auto_augment",
    "AUGMENTATIONS",
    "AUTO_AUGMENTATIONS",
    "NORMALISATION",
    "Dataset",
    "DatasetInfo",
    "DataShape",
    "eval_batches",
    "load",
    "shape_of",
    "train_batches",
]
