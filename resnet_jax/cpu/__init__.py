"""CPU-specific machinery, chosen by the entry points and never by a model: oneDNN convolutions as
XLA custom calls (`onednn`), the XLA flags the project runs with (`xla_flags`), and glibc malloc
settings (`host_memory`), which of XLA and oneDNN runs each shape (`conv_table`, `conv_choice`).
`settings.apply()` (through `resnet_jax.runtime.setup()`) sets the process-wide settings.
"""
