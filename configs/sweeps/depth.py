r"""Depth of the residual net alone: the same recipe at each depth (He et al. 2015, table 6: 20, 32,
44, 56, 110).

    python -m resnet_jax.sweep --config=configs/cifar10.py:resnet20,epochs=2
    --sweep=configs/sweeps/depth.py:20+56 \
        --workdir=DIR

Arg: depths joined by '+' (6n+2; default 20+32+44+56). Only model.depth changes: on the paper's
schedule ResNet-110's warm-up (lr 0.01 for 400 steps) belongs to the config variant
configs/cifar10.py:resnet110, which an override of the depth does not bring; the short recipes
(',epochs=N', '_fast') have none, so any depth is that recipe exactly. experiments/cifar10.py runs
it for its ResNet rows.
"""

DEPTHS = (20, 32, 44, 56)


def get_sweep(arg=None):
    return {"model.depth": [int(d) for d in arg.split("+")] if arg else list(DEPTHS)}
