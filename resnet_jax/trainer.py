"""A config in, a trained run out: every piece built from the config in one pass (build.py), then
the workdir's lock, the run's records and the training loop (training/train.py).

    # what `python -m resnet_jax.main` calls after its setup
    summary = trainer.train(config, workdir)
"""

from __future__ import annotations

import contextlib
import json
import logging as pylogging
import os
import sys

import jax
import ml_collections
from absl import logging
from etils import epath

from resnet_jax import build, data, errors, records, restore, runtime
from resnet_jax.cpu import onednn
from resnet_jax.training import paths, train
from resnet_jax.training.checkpoint import CheckpointError, finished_steps
from resnet_jax.training.lock import WorkdirBusy, workdir_lock
from resnet_jax.training.signals import Stopped, stop_requests


def train_command(config: ml_collections.ConfigDict, workdir: str) -> dict[str, float]:
    """The trainer as a command runs it: the config checked, the workdir tried, SIGTERM/SIGINT
    turned into a saved stop; each failure an errors.* exception (one line, its exit status).
    Returns the final metrics."""
    logging.get_absl_handler().addFilter(_QuietOrbax())
    workdir = paths.run_path(workdir)
    build.validate_config(
        config, device_count=jax.device_count(), process_count=jax.process_count()
    )
    if jax.process_index() == 0:
        try:
            # a wrong bucket or missing credentials, before data and compiles
            paths.check_writable(workdir)
        except paths.WorkdirUnusable as error:
            raise errors.UserError(str(error)) from None
    try:
        with stop_requests() as requested:
            _, summary = run(config, workdir, requested)
    except Stopped as error:
        raise errors.Interrupted(str(error)) from None
    except (WorkdirBusy, paths.WorkdirUnusable) as error:
        raise errors.RunError(str(error)) from None
    except CheckpointError as error:
        # Orbax's writer threads may be stuck on the broken folder and would keep the process alive:
        # report and leave now. Everything worth keeping is in the intact checkpoints.
        print(f"error: {errors.one_line(str(error))}", file=sys.stderr, flush=True)
        logging.flush()
        os._exit(errors.FAILURE)
    logging.info("Done: %s", json.dumps(summary))
    return summary


def run(
    config: ml_collections.ConfigDict, workdir: str | epath.Path, stop_requested=lambda: None
) -> tuple[train.TrainState, dict[str, float]]:
    """Build the model and check its shapes against the data set's info, then load the data
    (nothing written yet, nothing compiled), then take the workdir's lock, write the run's records
    into it, and train."""
    d, t = config.data, config.train
    shape = build.data_shape(d)  # the image shape and class count, before any image is read
    conv_impl = runtime.conv_impl_for(t.conv_impl, parallel_mode=t.parallel, dtype=t.dtype)
    on_cpu = jax.default_backend() == "cpu"
    reason = onednn.why_unavailable() if conv_impl == "xla" and on_cpu else None
    logging.info(
        "Convolutions: %s%s", conv_impl, f" (oneDNN unavailable: {reason})" if reason else ""
    )
    model = build.model(config, shape.num_classes, runtime.backend_of(conv_impl))
    # The batch one device holds: CPU devices share the host's memory, accelerators have their own.
    holders = jax.process_count() if on_cpu or t.parallel == "single" else jax.device_count()
    rows = build.check_model(
        model,
        shape.image_shape,
        batch_size=d.batch_size // holders,
        dtype=t.dtype,
        allow_degenerate_maps=t.allow_degenerate_maps,
    )
    dataset = build.load_data(d)
    logging.info("Data: %s", dataset.info)
    if (dataset.info.image_shape, dataset.info.num_classes) != shape:
        raise RuntimeError(f"data.shape_of gave {shape}, but the loaded data set is {dataset.info}")
    if d.batch_size > dataset.info.num_train:  # before the workdir is written or anything compiles
        raise errors.UserError(
            f"config.data.batch_size={d.batch_size}: larger than the {dataset.info.num_train} "
            f"training examples of {dataset.info.name}; lower it"
        )
    optimizer = build.run_optimizer(config)
    # The weights are only the starting point: a run that has checkpoints resumes from them, and the
    # weight file need not outlive its first checkpoint.
    resuming = bool(finished_steps(paths.run_path(workdir) / "checkpoints"))
    channels = dataset.info.image_shape[-1]
    init = None if resuming else restore.init_weights(config, model, in_channels=channels)
    processes = jax.process_count()

    def train_batches(start_step: int):
        return data.train_batches(
            dataset,
            batch_size=d.batch_size // processes,
            seed=d.seed,
            augment=d.augment,
            start_step=start_step,
            cutout=d.cutout,
            auto_augment=d.auto_augment,
        )

    def eval_batches():
        return data.eval_batches(dataset, batch_size=d.eval_batch_size // processes)

    loop = train.Loop(
        t.steps,
        t.eval_every,
        t.checkpoint_every,
        t.log_every,
        t.keep_checkpoints,
        t.stop_after,
        build.profile_steps(t.profile, t.stop_after or t.steps),
    )
    inputs = train.Input(train_batches, eval_batches, dataset.info.image_shape, d.batch_size)
    # One run per workdir: process 0 holds the lock (the others write nothing there but checkpoint
    # shards).
    first = jax.process_index() == 0
    with workdir_lock(workdir) if first else contextlib.nullcontext():
        if first:
            records.write_run_info(workdir, config)
            records.write_model_summary(workdir, rows, dataset.info.image_shape)
        return train.train_and_evaluate(
            model=model,
            optimizer=optimizer,
            data=inputs,
            loop=loop,
            workdir=workdir,
            seed=t.seed,
            parallel_mode=t.parallel,
            recipe=build.recipe(config),
            init=init,
            stop_requested=stop_requested,
            hparams=records.flat_fields(config),
        )


class _QuietOrbax(pylogging.Filter):
    """Drop orbax's own log lines (several per checkpoint, and a traceback per thread when a write
    fails): the trainer reports what matters in one line (training/checkpoint.py). --verbose keeps
    them."""

    def filter(self, record: pylogging.LogRecord) -> bool:
        quiet = "orbax" in record.pathname or "asyncio" in record.pathname
        return not quiet or record.levelno >= pylogging.CRITICAL or errors.verbose()
