"""CPU-specific machinery, chosen by the entry points and never by a model: oneDNN convolutions as
XLA custom calls (`onednn`), the XLA flags the project runs with (`xla_flags`), and glibc malloc
settings (`host_memory`). `resnet_jax.runtime.setup()` applies the process-wide settings.
"""
