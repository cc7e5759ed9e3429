"""Entry point: a config file in, a trained model, metrics and checkpoints in --workdir out.

    python -m resnet_jax.main --config=configs/default.py --workdir=/tmp/runs/default
    python -m resnet_jax.main --config=configs/cifar10.py:resnet56 --workdir=DIR --config.optim.lr=0.2

Re-running the same command on the same workdir resumes from its latest intact checkpoint. Several hosts: run
the same command on each with --coordinator_address=HOST:PORT --num_processes=P --process_id=i (or the
JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID environment variables); each reads its own shard.
On a Cloud TPU pod slice (or under Slurm / Open MPI), --distributed lets JAX find those values itself. The
workdir may be a local folder or gs://BUCKET/PATH (see docs/cloud.md).
The config is checked once, here; everything below it receives plain values.
"""
from __future__ import annotations

import contextlib
import json
import logging as pylogging
import os
import subprocess
import sys
import warnings

import jax
import numpy as np
import ml_collections
from absl import app, flags, logging
from etils import epath
from ml_collections import config_flags

from resnet_jax import build, cli, data, runtime
from resnet_jax.cpu import onednn
from resnet_jax.nn import trace
from resnet_jax.nn.models import DTYPES, get_model
from resnet_jax.training import finetune, optim, parallel, paths, train
from resnet_jax.training.checkpoint import CheckpointError, finished_steps
from resnet_jax.training.lock import WorkdirBusy, workdir_lock
from resnet_jax.training.signals import Stopped, stop_requests

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Config file, e.g. configs/default.py or configs/cifar10.py:resnet56; "
                                "any field is overridden with --config.GROUP.FIELD=VALUE, and --print_config lists "
                                "them all with their values.",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Where checkpoints, metrics and the config of the run are written.")
flags.DEFINE_string("coordinator_address", None,
                    "host:port of process 0, for multi-process training (default: $JAX_COORDINATOR_ADDRESS).")
flags.DEFINE_integer("num_processes", None, "Processes in the run (default: $JAX_NUM_PROCESSES, else 1).")
flags.DEFINE_integer("process_id", None, "This process's index (default: $JAX_PROCESS_ID, else 0).")
flags.DEFINE_bool("print_config", False, "Print the resolved config (the file with every --config.FIELD override) "
                  "and check it, then exit; nothing trains, --workdir is not needed.")
flags.DEFINE_bool("distributed", False, "Call jax.distributed.initialize() even without the flags above, letting "
                  "JAX detect the cluster (Cloud TPU pod slices, Slurm, Open MPI).")


def validate_config(config: ml_collections.ConfigDict, *, device_count: int, process_count: int) -> None:
    """Raise ValueError naming the field for any value that cannot run; silent when all is well."""
    t, o, d = config.train, config.optim, config.data

    def check(ok: bool, field: str, why: str) -> None:
        if not ok:
            raise cli.UserError(f"config.{field}={config[field.split('.')[0]][field.split('.')[1]]!r}: {why}")

    check(t.parallel in parallel.MODES, "train.parallel", f"use one of {parallel.MODES}")
    check(t.parallel != "single" or process_count == 1, "train.parallel",
          f"'single' runs one process; this run has {process_count}: use 'pmap' or 'sharding'")
    check(t.dtype in DTYPES, "train.dtype", f"use one of {sorted(DTYPES)}")
    check(t.conv_impl in runtime.CONV_IMPLS, "train.conv_impl", f"use one of {runtime.CONV_IMPLS}")
    if t.conv_impl == "onednn":
        check(onednn.available(), "train.conv_impl",
              f"oneDNN convolutions cannot run here ({onednn.why_unavailable()}); use 'auto' or 'xla'")
    for field in ("steps", "eval_every", "checkpoint_every", "log_every", "keep_checkpoints"):
        check(t[field] >= 1, f"train.{field}", "must be >= 1")
    devices = 1 if t.parallel == "single" else device_count
    for field in ("batch_size", "eval_batch_size"):
        check(d[field] >= 1 and d[field] % devices == 0, f"data.{field}",
              f"must be a positive multiple of the {devices} device(s) of parallel={t.parallel!r}")
    check(d.augment in data.AUGMENTATIONS, "data.augment", f"use one of {data.AUGMENTATIONS}")
    check(d.auto_augment in data.AUTO_AUGMENTATIONS, "data.auto_augment", f"use one of {data.AUTO_AUGMENTATIONS}")
    for field in ("cutout", "mixup", "cutmix"):
        check(d[field] >= 0, f"data.{field}", "must be >= 0 (0 turns it off)")
    check(0 <= t.stop_after <= t.steps, "train.stop_after",
          f"must lie in [0, train.steps={t.steps}] (0 runs to the end)")
    check(t.accumulate_steps >= 1 and t.steps % t.accumulate_steps == 0, "train.accumulate_steps",
          f"batches per update: must be >= 1 and divide train.steps={t.steps}")
    check(not config.init.reset_head or bool(config.init.weights), "init.reset_head",
          "re-initialises the classifier of loaded weights: give config.init.weights too")
    check(o.name in optim.OPTIMIZERS, "optim.name", f"use one of {optim.OPTIMIZERS}")
    check(o.schedule in optim.SCHEDULES, "optim.schedule", f"use one of {optim.SCHEDULES}")
    check(o.lr > 0, "optim.lr", "must be > 0")
    check(0 <= o.warmup_steps < t.steps, "optim.warmup_steps", f"must lie in [0, train.steps={t.steps})")
    check(len(o.boundaries) == len(o.scales), "optim.scales",
          f"needs one factor per boundary; optim.boundaries={o.boundaries!r}")
    check(list(o.boundaries) == sorted(set(o.boundaries)) and all(0 < b < t.steps for b in o.boundaries),
          "optim.boundaries", f"must be increasing steps inside (0, train.steps={t.steps})")
    check(0 <= o.momentum < 1, "optim.momentum", "must lie in [0, 1)")
    check(0 <= o.beta2 < 1, "optim.beta2", "must lie in [0, 1)")
    check(o.weight_decay >= 0, "optim.weight_decay", "must be >= 0")
    check(0 <= o.label_smoothing < 1, "optim.label_smoothing", "must lie in [0, 1)")
    check(o.grad_clip >= 0, "optim.grad_clip", "must be >= 0 (0 turns clipping off)")
    check(0 <= o.ema < 1, "optim.ema", "is the EMA decay: must lie in [0, 1) (0 turns it off)")
    try:
        parts = finetune.parts(get_model(**config.model))
    except (TypeError, ValueError) as error:
        raise cli.UserError(f"config.model: {error}") from None
    check(all(part in parts for part in config.init.frozen), "init.frozen", f"use parts of the model: {parts}")
    check(not (config.init.reset_head and "head" in config.init.frozen), "init.frozen",
          "would freeze the classifier that init.reset_head re-initialises")


def write_run_info(workdir: str | epath.Path, config: ml_collections.ConfigDict) -> None:
    """Write config.json and run.json (git revision, command, devices) into workdir; warn if the config changed."""
    if jax.process_index() != 0:
        return
    workdir = paths.run_path(workdir)
    paths.make_dirs(workdir)
    config_path = workdir / "config.json"
    if config_path.exists() and _run_defining(json.loads(config_path.read_text())) != _run_defining(
            json.loads(config.to_json())):
        logging.warning("The config differs from the one this workdir was started with (%s); the new one "
                        "is recorded, the checkpoint state is resumed as saved.", config_path)
    paths.write_text(config_path, config.to_json(indent=2))
    paths.write_text(workdir / "run.json", json.dumps(
        {"git_revision": git_revision(), "command": sys.argv, "jax": jax.__version__,
         "devices": [str(d) for d in jax.devices()], "processes": jax.process_count()}, indent=2))


def _run_defining(fields: dict) -> dict:
    """A config as JSON without train.stop_after: where a run pauses is not part of what it computes."""
    return {**fields, "train": {k: v for k, v in fields["train"].items() if k != "stop_after"}}


def check_model(model, image_shape: tuple[int, int, int], *, batch_size: int, dtype: str,
                allow_degenerate_maps: bool) -> list[trace.LayerRow]:
    """Trace the model's shapes (nothing compiles): a collapse raises naming the layer; a degenerate map is a
    visible warning; activations that cannot fit in memory are an error naming the largest layer."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            rows = trace.trace(model, (1, *image_shape))
        except ValueError as error:  # ShapeError included: a layer the config's sizes cannot build
            raise cli.UserError(f"config.model: {error}") from None
    if not allow_degenerate_maps:
        for warning in caught:
            print(f"warning: {warning.message} (config.train.allow_degenerate_maps=True silences this)",
                  file=sys.stderr, flush=True)
    # Forward activations are kept for the backward pass, and their gradients live beside them: about twice
    # the sum of every layer's output, per example, in the compute dtype.
    item = 2 if dtype == "bfloat16" else 4
    per_example = sum(int(np.prod(r.out_shape[1:])) for r in rows)
    needed, available = 2 * per_example * batch_size * item, memory_bytes()
    if available and needed > 0.8 * available:
        widest = max(rows, key=lambda r: int(np.prod(r.out_shape[1:])))
        raise cli.UserError(
            f"config.model: activations need about {needed / 2**30:.0f} GiB per step of data.batch_size="
            f"{batch_size}, more than this device's {available / 2**30:.0f} GiB; the largest is layer "
            f"'{widest.name}' with output {list(widest.out_shape[1:])} per image (check its padding, kernel and "
            f"stride fields, or lower data.batch_size)")
    return rows


def memory_bytes() -> int | None:
    """Memory of the first device: the GPU's or TPU's limit, the machine's RAM on the CPU; None if unknown."""
    device = jax.devices()[0]
    if device.platform == "cpu":
        try:
            return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError):
            return None
    stats = device.memory_stats() or {}
    return stats.get("bytes_limit")


def write_model_summary(workdir: str | epath.Path, rows: list[trace.LayerRow], image_shape: tuple[int, int, int]
                        ) -> None:
    """model_summary.json: parameters and MACs per image from the per-layer trace (sweeps collect it)."""
    params, macs = trace.totals(rows)
    workdir = paths.run_path(workdir)
    paths.make_dirs(workdir)
    paths.write_text(workdir / "model_summary.json",
                     json.dumps({"params": params, "macs": macs, "input_shape": list(image_shape)}))


def git_revision() -> str | None:
    """HEAD of the checkout that holds this file, with '-dirty' for uncommitted changes; outside git, the
    commit in the REVISION file the TPU launcher writes beside the unpacked code; else None."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        revision = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True,
                                  check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return revision + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        try:
            with open(os.path.join(repo, "REVISION")) as f:
                return f.read().strip() or None
        except OSError:
            return None


def run(config: ml_collections.ConfigDict, workdir: str | epath.Path, stop_requested=lambda: None
        ) -> tuple[train.TrainState, dict[str, float]]:
    """Build the model and check its shapes against the data set's info, then load the data (nothing written
    yet, nothing compiled), then take the workdir's lock, write the run's records into it, and train."""
    d, t = config.data, config.train
    shape = build.data_shape(d)  # the image shape and class count, before any image is read
    conv_impl = runtime.conv_impl_for(t.conv_impl, parallel_mode=t.parallel, dtype=t.dtype)
    reason = onednn.why_unavailable() if conv_impl == "xla" and jax.default_backend() == "cpu" else None
    why = f" (oneDNN unavailable: {reason})" if reason else ""
    logging.info("Convolutions: %s%s", conv_impl, why)
    model = get_model(**config.model, num_classes=shape.num_classes, dtype=DTYPES[t.dtype],
                      conv_backend=runtime.conv_backend(conv_impl), frozen_norm=tuple(config.init.frozen))
    # The batch one device holds: CPU devices share the host's memory, accelerators have their own.
    on_cpu = jax.default_backend() == "cpu"
    device_batch = d.batch_size // (jax.process_count() if on_cpu or t.parallel == "single" else jax.device_count())
    rows = check_model(model, shape.image_shape, batch_size=device_batch,
                       dtype=t.dtype, allow_degenerate_maps=t.allow_degenerate_maps)
    dataset = build.load_data(d)
    logging.info("Data: %s", dataset.info)
    if (dataset.info.image_shape, dataset.info.num_classes) != shape:
        raise RuntimeError(f"data.shape_of gave {shape}, but the loaded data set is {dataset.info}")
    optimizer = build.run_optimizer(config)
    # The weights are only the starting point: a run that has checkpoints resumes from them, and the weight file
    # need not outlive its first checkpoint.
    resuming = bool(finished_steps(paths.run_path(workdir) / "checkpoints"))
    init = None if resuming else build.init_weights(config, model, in_channels=dataset.info.image_shape[-1])
    processes = jax.process_count()

    def train_batches(start_step: int):
        return data.train_batches(dataset, batch_size=d.batch_size // processes, seed=d.seed, augment=d.augment,
                                  start_step=start_step, cutout=d.cutout, auto_augment=d.auto_augment)

    def eval_batches():
        return data.eval_batches(dataset, batch_size=d.eval_batch_size // processes)

    # One run per workdir: process 0 holds the lock (the others write nothing there but checkpoint shards).
    with workdir_lock(workdir) if jax.process_index() == 0 else contextlib.nullcontext():
        if jax.process_index() == 0:
            write_run_info(workdir, config)
            write_model_summary(workdir, rows, dataset.info.image_shape)
        return train.train_and_evaluate(
            model=model, optimizer=optimizer,
            data=train.Input(train_batches, eval_batches, dataset.info.image_shape, d.batch_size),
            loop=train.Loop(t.steps, t.eval_every, t.checkpoint_every, t.log_every, t.keep_checkpoints, t.stop_after),
            workdir=workdir, seed=t.seed, parallel_mode=t.parallel, recipe=build.recipe(config), init=init,
            stop_requested=stop_requested, hparams=flat_fields(config))


def flat_fields(config: ml_collections.ConfigDict) -> dict:
    """The config as {'optim.lr': 0.1, ...}, one entry per field (what TensorBoard's HParams lists)."""
    def walk(prefix, tree):
        for key, value in tree.items():
            if isinstance(value, dict):
                yield from walk(f"{prefix}{key}.", value)
            else:
                yield f"{prefix}{key}", value
    return dict(walk("", config.to_dict()))


def process_flags() -> dict:
    """The multi-process flags, each defaulting to its JAX_* environment variable (read now, not at import)."""
    env = os.environ
    address = FLAGS.coordinator_address or env.get("JAX_COORDINATOR_ADDRESS")
    count = FLAGS.num_processes if FLAGS.num_processes is not None else int(env.get("JAX_NUM_PROCESSES", 1))
    index = FLAGS.process_id if FLAGS.process_id is not None else int(env.get("JAX_PROCESS_ID", 0))
    return {"coordinator_address": address, "num_processes": count, "process_id": index}


class _QuietOrbax(pylogging.Filter):
    """Drop orbax's own log lines (several per checkpoint, and a traceback per thread when a write fails):
    the trainer reports what matters in one line (training/checkpoint.py). --verbose keeps them."""

    def filter(self, record: pylogging.LogRecord) -> bool:
        quiet = "orbax" in record.pathname or "asyncio" in record.pathname
        return not quiet or record.levelno >= pylogging.CRITICAL or cli.verbose()


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if FLAGS.config is not None and FLAGS.print_config:
        print(FLAGS.config, end="", flush=True)
        validate_config(FLAGS.config, device_count=jax.device_count(), process_count=1)
        return
    if FLAGS.config is None or FLAGS.workdir is None:
        raise app.UsageError("--config and --workdir are required.")
    runtime.setup()  # before the first computation creates the backend and its threads
    processes = process_flags()
    if processes["num_processes"] > 1:
        jax.distributed.initialize(**processes)
    elif FLAGS.distributed:
        jax.distributed.initialize()  # the cluster tells JAX the coordinator, the count and this process's index
    logging.get_absl_handler().addFilter(_QuietOrbax())
    config, workdir = FLAGS.config, paths.run_path(FLAGS.workdir)
    validate_config(config, device_count=jax.device_count(), process_count=jax.process_count())
    if jax.process_index() == 0:
        try:
            paths.check_writable(workdir)  # a wrong bucket or missing credentials, before the data and compiles
        except paths.WorkdirUnusable as error:
            raise cli.UserError(str(error)) from None
    try:
        with stop_requests() as requested:
            _, summary = run(config, workdir, requested)
    except Stopped as error:
        raise cli.Interrupted(str(error)) from None
    except (WorkdirBusy, paths.WorkdirUnusable) as error:
        raise cli.RunError(str(error)) from None
    except CheckpointError as error:
        # Orbax's writer threads may be stuck on the broken folder and would keep the process alive: report
        # and leave now. Everything worth keeping is in the intact checkpoints.
        print(f"error: {cli.one_line(str(error))}", file=sys.stderr, flush=True)
        logging.flush()
        os._exit(cli.FAILURE)
    logging.info("Done: %s", json.dumps(summary))
    if jax.process_index() == 0:
        print("final: " + " | ".join(f"{k} {v:.4f}" for k, v in summary.items()), flush=True)


if __name__ == "__main__":
    cli.run_absl(main)
