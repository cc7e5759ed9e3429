"""Model registry: `get_model('resnet50')`, `get_model('cifar_resnet56')`,
`get_model('cifar_plain56')`.

Names are `[cifar_][preact_](resnet|plain)DEPTH`:
  resnetD        ImageNet ResNet, D in 18, 34, 50, 101, 152, 200 (v1.5 strides, shortcut B, 1000
  classes).
  cifar_resnetD  CIFAR ResNet of He et al. 2015, D = 6n+2 (20, 32, 44, 56, 110, 1202), widths
  16/32/64,
                 shortcut A, 10 classes; 164 and 1001 are bottleneck nets (9n+2), as in He et al.
                 2016.
  preact_...     the pre-activation (v2) blocks.
  ...plainD      the same network with no shortcuts (the degradation study).
Any ResNet field can be overridden: `get_model('resnet50', num_classes=10, stem_pool=False)`; an
override of None keeps the family's default (a config's unset field).
"""

from __future__ import annotations

import dataclasses
import re

import jax.numpy as jnp

from resnet_jax.nn.blocks import block_class
from resnet_jax.nn.resnet import ResNet

# the computation dtypes a config may name
DTYPES = {
    "float32": jnp.float32,
    "bfloat16": jnp.bfloat16,
}

IMAGENET_STAGES = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
    200: ("bottleneck", (3, 24, 36, 3)),
}
# the CIFAR depths He et al. 2016 built from bottleneck blocks
BOTTLENECK_CIFAR_DEPTHS = (
    164,
    1001,
)
NAME_PATTERN = re.compile(
    r"^(?P<cifar>cifar_)?(?P<preact>preact_)?(?P<kind>resnet|plain)(?P<depth>\d+)?$"
)
OVERRIDABLE = tuple(f.name for f in dataclasses.fields(ResNet) if f.name not in ("parent", "name"))


def imagenet_resnet(
    depth: int, *, preact: bool = False, plain: bool = False, **overrides
) -> ResNet:
    """ResNet-18 ... 200 for 224x224 inputs: 7x7/2 stem, max-pool, four stages, 1000 classes."""
    if depth not in IMAGENET_STAGES:
        raise ValueError(
            f"ImageNet ResNet depth must be one of {sorted(IMAGENET_STAGES)}, got {depth}."
        )
    block, stages = IMAGENET_STAGES[depth]
    fields = dict(stage_sizes=stages, block=("preact_" if preact else "") + block)
    if plain:
        fields["shortcut"] = _plain_shortcut(depth, overrides)
    return _build(fields, overrides)


def cifar_resnet(depth: int, *, preact: bool = False, plain: bool = False, **overrides) -> ResNet:
    """CIFAR ResNet: 3x3 stem of 16, three stages of n blocks at 32/16/8 pixels, widths 16/32/64.

    Basic blocks (6n+2) with shortcut A by default, as in He et al. 2015; bottleneck blocks (9n+2)
    with projection shortcuts where the shape changes (B) for the depths He et al. 2016 built from
    them, 164 and 1001 (1.70M and 10.33M parameters; the paper rounds them to 1.7M and 10.2M).
    `block=` chooses explicitly.
    """
    bottleneck = depth in BOTTLENECK_CIFAR_DEPTHS
    default = "bottleneck" if bottleneck else "basic"
    block = overrides.pop("block", ("preact_" if preact else "") + default)
    layers_per_block = block_class(block).layers
    n, rest = divmod(depth - 2, 3 * layers_per_block)
    if depth < 2 + 3 * layers_per_block or rest:
        rule = f"{3 * layers_per_block}n+2"
        examples = "20, 32, 44, 56, 110, 1202" if layers_per_block == 2 else "29, 56, 164, 1001"
        raise ValueError(
            f"A CIFAR ResNet with {block} blocks has depth {rule} (n blocks per stage, "
            f"{layers_per_block} layers each, plus stem and classifier): e.g. {examples}; got "
            f"{depth}."
        )
    fields = dict(
        stage_sizes=(n, n, n),
        block=block,
        widths=(16, 32, 64),
        stage_strides=(1, 2, 2),
        num_classes=10,
        shortcut=_plain_shortcut(depth, overrides) if plain else "B" if bottleneck else "A",
        stem_kernel=3,
        stem_stride=1,
        stem_pool=False,
    )
    return _build(fields, overrides)


def _plain_shortcut(depth: int, overrides: dict) -> str:
    """'none': a plain net has no shortcuts, and an override that adds them would silently make it
    residual."""
    shortcut = overrides.pop("shortcut", "none")
    if shortcut != "none":
        raise ValueError(
            f"A plain network has no shortcuts, but shortcut={shortcut!r} was given: use the resnet"
            f"{depth} name for a residual network, or shortcut='none'."
        )
    return shortcut


def _build(fields: dict, overrides: dict) -> ResNet:
    unknown = sorted(set(overrides) - set(OVERRIDABLE))
    if unknown:
        raise ValueError(
            f"Unknown model field(s) {unknown}; ResNet's fields are {list(OVERRIDABLE)}."
        )
    return ResNet(**{**fields, **overrides})


def get_model(name: str, **overrides) -> ResNet:
    """A ResNet by registry name, with any ResNet field overridden (`depth=` may replace the name's
    depth); None keeps the default."""
    overrides = {field: value for field, value in overrides.items() if value is not None}
    match = NAME_PATTERN.match(name)
    depth = overrides.pop("depth", None)
    if match is None or (match["depth"] is None and depth is None):
        raise ValueError(
            f"Unknown model {name!r}. Names are [cifar_][preact_](resnet|plain)DEPTH, e.g. "
            f"'resnet50', 'preact_resnet18', 'cifar_resnet56', 'cifar_plain20'; the depth may "
            f"also be given as depth=... (then 'cifar_resnet' is enough)."
        )
    depth = int(depth if depth is not None else match["depth"])
    family = cifar_resnet if match["cifar"] else imagenet_resnet
    return family(depth, preact=bool(match["preact"]), plain=match["kind"] == "plain", **overrides)
