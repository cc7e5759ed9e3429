"""The pure modules: shape arithmetic (`shapes`), `conv2d` and pooling, BatchNorm, the blocks, the
ResNet and its registry (`models`), and the per-layer trace. Nothing here trains, reads data, or
knows a CPU
backend:
`import resnet_jax` re-exports the names a researcher uses, and tests/test_layering.py keeps it so.
"""
