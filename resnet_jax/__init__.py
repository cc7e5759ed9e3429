"""resnet_jax: convolutional and residual networks in JAX/Flax.

The pieces a researcher imports most often are re-exported here; each lives in a file named for it.
"""
from resnet_jax.shapes import ShapeError, output_size, resolve_padding
from resnet_jax.conv import conv2d

__all__ = ["ShapeError", "output_size", "resolve_padding", "conv2d"]
