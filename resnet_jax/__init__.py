"""resnet_jax: convolutional and residual networks in JAX/Flax, correct to the last pixel of a
shape.

The research API, all of it pure (no training, no I/O, no process settings) and defined in
`resnet_jax.nn`:

    import jax, jax.numpy as jnp, resnet_jax as rj
    model = rj.get_model("cifar_resnet20")  # or "resnet50", "cifar_plain56", ...
    variables = model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
    print(rj.totals(rj.trace(model, (1, 32, 32, 3))))  # (269722, 40551040): parameters, MACs
    # 16 (7, 1)
    print(rj.output_size(32, 3, stride=2, padding=1), rj.stack_receptive_field([3, 3, 3]))

The layers of the tree: `nn/` (this API), `data/` (input pipelines), `training/` (the trainer),
`cpu/` (oneDNN convolutions, XLA flags, malloc; chosen by the entry points through `runtime`),
`interop/` (torchvision weights), `sweeps/`, and the commands `python -m
resnet_jax.{main,evaluate,sweep,summary,convert,benchmark}`.
"""

from resnet_jax.nn.blocks import (
    SHORTCUTS,
    BasicBlock,
    Block,
    BottleneckBlock,
    PreActBasicBlock,
    PreActBottleneckBlock,
)
from resnet_jax.nn.conv import Conv2D, conv2d
from resnet_jax.nn.models import get_model
from resnet_jax.nn.nnx_bridge import NNXModel
from resnet_jax.nn.norm import BatchNorm
from resnet_jax.nn.pool import GlobalAvgPool, MaxPool2D, max_pool2d
from resnet_jax.nn.resnet import ResNet
from resnet_jax.nn.shapes import (
    ShapeError,
    output_size,
    receptive_field_step,
    resolve_padding,
    stack_receptive_field,
)
from resnet_jax.nn.trace import (
    LayerRow,
    empirical_receptive_field,
    feature_map_warnings,
    totals,
    trace,
)

__all__ = [
    "BasicBlock",
    "Block",
    "BottleneckBlock",
    "PreActBasicBlock",
    "PreActBottleneckBlock",
    "SHORTCUTS",
    "Conv2D",
    "conv2d",
    "get_model",
    "BatchNorm",
    "NNXModel",
    "GlobalAvgPool",
    "MaxPool2D",
    "max_pool2d",
    "ResNet",
    "ShapeError",
    "output_size",
    "receptive_field_step",
    "resolve_padding",
    "stack_receptive_field",
    "LayerRow",
    "empirical_receptive_field",
    "feature_map_warnings",
    "totals",
    "trace",
]
