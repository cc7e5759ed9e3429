"""The degradation study (He et al. 2015, figure 6): plain vs residual nets of the same depths,
nothing else changed.

    # real digits, 150 steps of 64: 15 min on 2 cores
    python -m resnet_jax.sweep --config=configs/mnist5k.py \
        --sweep=configs/sweeps/degradation.py --set=train.steps=150 --set=train.eval_every=150 \
        --set=data.batch_size=64 --set=optim.warmup_steps=7 --workdir=DIR \
        --results_dir=experiments/results/degradation_mnist5k
    # the embedded set, a third series with zero-initialised blocks: ~1 h
    python -m resnet_jax.sweep --config=configs/default.py \
        --sweep=configs/sweeps/degradation.py:zero_init --set=train.steps=300 \
        --set=train.eval_every=300 --set=optim.warmup_steps=50 --workdir=DIR \
        --results_dir=experiments/results/degradation_shapes32

The budget is the config's, overridden on the command line (`--set`, or a config's ',epochs=N').
Arg: comma-separated options; depths joined by '+' (6n+2; default 20+32+44+56), and 'zero_init' for
a third series, residual nets whose blocks start as identities (the last BatchNorm of each block
scaled by zero, Goyal et al. 2017; a plain net so initialised would output zeros, so residual nets
only).
"""

DEPTHS = (20, 32, 44, 56)


def get_sweep(arg=None):
    options = arg.split(",") if arg else []
    depths = [int(d) for o in options if o[:1].isdigit() for d in o.split("+")] or list(DEPTHS)
    unknown = [o for o in options if not o[:1].isdigit() and o != "zero_init"]
    if unknown:
        raise ValueError(
            f"configs/sweeps/degradation.py:{arg}: unknown option {unknown[0]!r}; use depths "
            "joined "
            f"by '+' (20+56) and/or 'zero_init'."
        )
    # Plain = no shortcuts; residual = the paper's option A. Point names (workdirs) follow this key
    # order.
    points = [
        {"model.shortcut": shortcut, "model.depth": depth}
        for shortcut in ("none", "A")
        for depth in depths
    ]
    if "zero_init" in options:
        points += [
            {"model.shortcut": "A", "model.zero_init_last": True, "model.depth": depth}
            for depth in depths
        ]
    return points
