"""The trainer: train state, jit-compiled steps, optimizers, device placement, checkpoints, metrics.

Nothing here reads a config: the entry points (`resnet_jax.main`) turn config fields into plain
arguments.
"""
