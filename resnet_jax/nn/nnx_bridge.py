"""Our (Linen) ResNets used from Flax NNX, through flax.nnx.bridge: one NNX module, its variables as
nnx.Param and nnx.BatchStat, and the BatchNorm statistics updated in place when it trains.

    from flax import nnx
    import optax, resnet_jax as rj
    model = rj.NNXModel(rj.get_model("cifar_resnet20"), (1, 32, 32, 3), rngs=nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, optax.sgd(0.1, momentum=0.9), wrt=nnx.Param)

    @nnx.jit
    def train_step(model, optimizer, images, labels):  # images [N, H, W, C], labels [N]
        def loss_fn(model):
            logits = model(images, train=True)
            return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
        loss, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads)
        return loss
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import nnx
from flax.nnx import bridge


class NNXModel(nnx.Module):
    """A Linen module (a ResNet of `get_model`) as an NNX module, initialised on `input_shape`
    [N, H, W, C]. Call as model(x, train=...) -> logits [N, classes]."""

    def __init__(self, module: nn.Module, input_shape: Sequence[int], *, rngs: nnx.Rngs):
        self.linen = bridge.ToNNX(module, rngs=rngs)
        bridge.lazy_init(self.linen, jnp.zeros(input_shape, jnp.float32), train=False)

    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        # Training updates the BatchNorm statistics (Linen's mutable 'batch_stats') in place.
        return self.linen(x, train=train, mutable=["batch_stats"] if train else False)

    def linen_variables(self) -> dict:
        """{'params', 'batch_stats'} as Linen's `apply` (our checkpoints, ports) takes them."""
        return {
            "params": nnx.state(self, nnx.Param).to_pure_dict()["linen"],
            "batch_stats": nnx.state(self, nnx.BatchStat).to_pure_dict()["linen"],
        }
