r"""ImageNet (ILSVRC-2012) with ResNet-18 ... 152, the standard 90-epoch recipe (Goyal et al. 2017).

    python -m resnet_jax.main --config=configs/imagenet.py:resnet50 --workdir=DIR \
        --config.data.data_dir=~/tensorflow_datasets [--config.data.manual_dir=DIR_WITH_THE_TARS]

Variants by arg: "resnet50" (step decay, lr / 10 at epochs 30, 60, 80) or "resnet50,cosine" (cosine
decay); resnet18, resnet34, resnet101, resnet152 likewise; ",batch=1024" sets the global batch and
rescales the lr, the warmup and every step count with it (--config.data.batch_size alone rescales
nothing). SGD momentum 0.9, weight decay 1e-4, lr 0.1 x batch/256 with a 5-epoch linear warmup above
batch 256, Inception crop + flip at 224, centre 87.5% crop for eval, bfloat16 compute. Label
smoothing:
--config.optim.label_smoothing=0.1.
Published top-1 with this recipe: ResNet-50 about 76.3%, ResNet-18 about 70%. Needs accelerators:
about a day on 8 modern GPUs for ResNet-50.
"""

import os
import runpy

# configs/base.py, read from beside this file (configs are files loaded by path, not a package).
base = runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)), "base.py"))
TRAIN_IMAGES = 1_281_167
DEPTHS = (18, 34, 50, 101, 152)


def get_config(arg="resnet50"):
    name, *options = (arg or "resnet50").split(",")
    batch = [o for o in options if o.startswith("batch=")]
    if (
        name not in {f"resnet{d}" for d in DEPTHS}
        or len(batch) > 1
        or not set(options) - set(batch) <= {"cosine"}
    ):
        raise ValueError(
            f"configs/imagenet.py:{arg}: use resnet18|34|50|101|152, then optionally ',cosine' "
            f"and ',batch=N'."
        )
    batch_size = int(batch[0].removeprefix("batch=")) if batch else 256
    steps_per_epoch = TRAIN_IMAGES // batch_size
    config = base["get_config"]()
    config.model.update(name="resnet", depth=int(name.removeprefix("resnet")), shortcut="B")
    config.data.update(
        name="imagenet2012",
        image_size=224,
        in_memory=False,
        augment="imagenet",
        batch_size=batch_size,
        eval_batch_size=512,
    )
    config.optim.update(
        lr=0.1 * batch_size / 256,  # linear scaling rule (Goyal et al.): 0.1 per 256 images
        weight_decay=1e-4,
        schedule="cosine" if "cosine" in options else "step",
        warmup_steps=5 * steps_per_epoch
        if batch_size > 256
        else 0,  # gradual warmup for large batches
        boundaries=tuple(e * steps_per_epoch for e in (30, 60, 80)),
        scales=(0.1, 0.1, 0.1),
    )
    config.train.update(
        steps=90 * steps_per_epoch,
        eval_every=steps_per_epoch,
        checkpoint_every=steps_per_epoch,
        log_every=100,
        parallel="sharding",
        dtype="bfloat16",
    )
    return config
