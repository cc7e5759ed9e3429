"""Stride and padding of the stem and of the downsampling: one field changed at a time against the baseline.

    python -m resnet_jax.sweep --config=configs/default.py --sweep=configs/sweeps/stride_padding.py --workdir=DIR

The baseline is the default model (a CIFAR-style ResNet on 32x32 inputs: 3x3 stem at stride 1, no pool, stages
at strides 1/2/2, symmetric padding); the fields exist in configs/default.py and configs/mnist5k.py.
experiments/stride_padding.py runs it with a budget and a depth of its own.
"""


def get_sweep(arg=None):
    if arg:
        raise ValueError(f"configs/sweeps/stride_padding.py:{arg}: this sweep takes no arg.")
    return [
        {},                                                # baseline
        {"model.stem_stride": 2},                          # stem stride 2
        {"model.stem_stride": 2, "model.stem_pool": True},  # stem stride 2 + max-pool
        {"model.stem_padding": 0},                         # stem padding 0 (32 -> 30)
        {"model.padding": "same"},                         # XLA's 'same' padding
        {"model.stage_strides": (2, 2, 1)},                # downsample early
        {"model.stage_strides": (1, 1, 2)},                # downsample late
        {"model.stage_strides": (1, 1, 1)},                # no downsampling
    ]
