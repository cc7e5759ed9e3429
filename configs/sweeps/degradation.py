"""The degradation study (He et al. 2015, figure 6): plain vs residual nets of the same depths,
nothing else changed.

    python -m resnet_jax.sweep --config=configs/default.py --sweep=configs/sweeps/degradation.py
    --workdir=DIR
    python -m resnet_jax.sweep --config=configs/mnist5k.py
    --sweep=configs/sweeps/degradation.py:20+56,zero_init ...

Arg: comma-separated options; depths joined by '+' (6n+2; default 20+32+44+56), and 'zero_init' for
a third series, residual nets whose blocks start as identities (the last BatchNorm of each block
scaled by zero, Goyal et al. 2017; a plain net so initialised would output zeros, so residual nets
only). experiments/degradation.py runs it with a budget of its own on each data set.
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
