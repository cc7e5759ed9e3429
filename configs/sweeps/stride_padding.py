r"""Stride and padding of the stem and of the downsampling: one field changed at a time against the
baseline.

    python -m resnet_jax.sweep --config=configs/default.py \
        --sweep=configs/sweeps/stride_padding.py --set=model.depth=8 --set=train.steps=200 \
        --workdir=DIR
    python -m resnet_jax.sweep --config=configs/cifar10.py:resnet20_fast,epochs=3 \
        --sweep=configs/sweeps/stride_padding.py:skip_full_resolution --seeds=0,1,2 --workdir=DIR

The baseline is the config's own CIFAR-style ResNet (3x3 stem at stride 1, no pool, stages at
strides 1/2/2, symmetric padding); every field varied here is in configs/base.py, so the sweep runs
on any CIFAR-style config.
":skip_full_resolution" leaves out the last point, which keeps every stage at the input's
resolution (6.8x the baseline's MACs on 32x32 images, as much as the other six points together).
Results on CIFAR-10 (ResNet-20, 3 epochs, 3 seeds):
experiments/results/ablation_stride_padding_cifar10/.
"""

POINTS = [
    {},  # baseline
    {"model.stem_stride": 2},  # stem stride 2
    {"model.stem_stride": 2, "model.stem_pool": True},  # stem stride 2 + max-pool
    {"model.stem_padding": 0},  # stem padding 0 (32 -> 30)
    {"model.padding": "same"},  # XLA's 'same' padding
    {"model.stage_strides": (2, 2, 1)},  # downsample early
    {"model.stage_strides": (1, 1, 2)},  # downsample late
    {"model.stage_strides": (1, 1, 1)},  # no downsampling
]


def get_sweep(arg=None):
    if arg == "skip_full_resolution":
        return POINTS[:-1]
    if arg:
        raise ValueError(
            f"configs/sweeps/stride_padding.py:{arg}: the arg may only be 'skip_full_resolution'."
        )
    return POINTS
