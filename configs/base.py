"""The schema every config shares, with each default once: the default run's values
(configs/default.py).

Not a run of its own: each config in this folder starts from `get_config()` here and changes only
the fields its recipe changes, as flax's examples/imagenet/configs do. A field that is absent is
None (a typed placeholder, so that `--config.data.path=/some/file` still type-checks); the entry
point reads "" from the command line as absent too, so that `--config.data.path=` switches a config
from files to TFDS.
"""

import os

import ml_collections
from ml_collections.config_dict import placeholder

# ../shared/data beside the checkout (this file is <checkout>/configs/base.py).
SHARED_DATA = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "data"
)


def shared_data(name: str) -> str:
    """The path of ../shared/data/NAME beside the checkout, where the real data sets live."""
    return os.path.normpath(os.path.join(SHARED_DATA, name))


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    # The run's length, a reference so that the warmup below follows it: `--config.train.steps=30`
    # alone is a proportionate short run. A config or override that sets optim.warmup_steps itself
    # cuts the link.
    steps = ml_collections.FieldReference(400)
    # Every field of the ResNet a sweep may vary: keyword arguments of
    # resnet_jax.nn.models.get_model (num_classes comes from the data set). None keeps the model
    # family's own default, shown after each field: a CIFAR ResNet and an ImageNet ResNet differ
    # there, so a data set's config sets only what its recipe changes.
    # 'basic' | 'bottleneck' | 'preact_basic' | 'preact_bottleneck' (by depth)
    # 'A' | 'B' | 'C' | 'none': CIFAR 'A' (bottleneck 'B'), ImageNet 'B'
    # each stage's first block: CIFAR (1, 2, 2), ImageNet (1, 2, 2, 2)
    config.model = dict(
        name="cifar_resnet",
        depth=8,
        block=placeholder(str),
        widths=placeholder(tuple),  # per stage: CIFAR (16, 32, 64), ImageNet (64, 128, 256, 512)
        width_multiplier=1.0,
        shortcut=placeholder(str),
        stem_features=placeholder(int),  # widths[0]
        stem_kernel=placeholder(int),  # CIFAR 3, ImageNet 7
        stem_stride=placeholder(int),  # CIFAR 1, ImageNet 2
        stem_padding=placeholder(int),  # the padding mode's: (kernel - 1) // 2 for 'symmetric'
        stem_pool=placeholder(bool),  # 3x3/2 max-pool after the stem: CIFAR False, ImageNet True
        stage_strides=placeholder(tuple),
        padding="symmetric",  # or 'same' (XLA's), for every conv and pool (resnet_jax/nn/resnet.py)
        stride_in_1x1=False,  # bottleneck stride on the first 1x1 (v1) instead of the 3x3 (v1.5)
        zero_init_last=False,  # zero scale of each block's last BatchNorm
        # stochastic depth: the last block's drop rate, linear in depth before it (0 is off)
        drop_path_rate=0.0,
    )
    # Keyword arguments of resnet_jax.data.load, then the batches' settings. Batch sizes are global
    # (all devices).
    config.data = dict(
        name="shapes32",
        path=placeholder(str),
        data_dir=placeholder(str),
        manual_dir=placeholder(str),
        split_seed=0,
        eval_fraction=placeholder(float),
        image_size=placeholder(int),
        in_memory=placeholder(bool),
        augment="cifar",
        batch_size=128,
        eval_batch_size=400,
        seed=0,
        # Per image, after augment: a random square of this side zeroed (Cutout; 0 is off), and
        # 'trivialaugment' (one random op at a random strength), 'randaugment[:N:M]' (N random ops
        # at magnitude M of 10; N=2, M=9 by default) or 'none'.
        cutout=0,
        auto_augment="none",
        # Per batch, on the device: the Beta(alpha, alpha) of mixup and of CutMix (0 is off; both
        # on picks one per batch), with the labels mixed alike.
        mixup=0.0,
        cutmix=0.0,
    )
    config.optim = dict(
        name="sgd",
        lr=0.2,
        momentum=0.9,
        nesterov=False,
        beta2=0.999,
        weight_decay=5e-4,
        exclude_bn_and_bias=False,
        schedule="cosine",
        warmup_steps=steps // 8,
        boundaries=(),
        scales=(),
        label_smoothing=0.0,
        grad_clip=0.0,
        ema=0.0,
    )
    config.train = dict(
        steps=steps,
        eval_every=200,
        checkpoint_every=100,
        keep_checkpoints=3,
        log_every=20,
        seed=0,
        parallel="single",
        dtype="float32",
        # A feature map at 1x1 before the last stage, or one that never shrinks, is a warning.
        allow_degenerate_maps=False,
        # 'auto': oneDNN's convolutions on the CPU where they apply (resnet_jax/cpu/onednn.py), else
        # XLA's.
        conv_impl="auto",
        # Batches per optimizer update (optax.MultiSteps): an update of accumulate_steps x
        # data.batch_size examples; steps and schedules still count batches.
        accumulate_steps=1,
        # Stop, evaluated and saved, after this many steps while the schedule still spans
        # train.steps: the first epochs of a long recipe (0 runs to train.steps). The same
        # command with a later stop_after, or 0, continues the run exactly.
        stop_after=0,
        # "START:COUNT": a jax.profiler trace of steps START .. START+COUNT-1 into WORKDIR/profile,
        # for TensorBoard's profile plugin; "" is off (and costs nothing).
        profile="",
    )
    # Where a run starts when its workdir has no checkpoint yet: weights (a torchvision
    # .pth/.safetensors, our .npz/.safetensors, or another run's WORKDIR/checkpoints/N), reset_head
    # for a new class count, and the parts that stay as loaded ('stem', 'stage1', ..., 'head'): no
    # updates, BatchNorm statistics kept.
    config.init = dict(weights=placeholder(str), reset_head=False, frozen=())
    return config
