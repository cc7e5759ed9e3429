"""TensorFlow for the input pipeline only: imported on first use, with its GPUs hidden, so that TF
never claims the accelerator JAX trains on."""

import functools


@functools.cache
def tensorflow():
    """The `tensorflow` module (its import takes seconds, so it happens here, once, when a pipeline
    needs it)."""
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        tf.config.set_visible_devices([], "GPU")
    return tf


def as_written(fn):
    """`fn` for tf.data's map, traced as written rather than converted by autograph: conversion
    writes a generated file per function into the temp folder and leaves it there, and our functions
    branch only on Python values (static shapes, config fields), never on a tensor."""
    return tensorflow().autograph.experimental.do_not_convert(fn)
