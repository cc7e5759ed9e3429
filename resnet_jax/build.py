"""From a config to the objects a run is made of, each field read once, here: the config's check,
the model (traced on the data's shape before anything is read), the data set, the optimizer and its
schedule, the recipe.

The trainer (trainer.py), evaluate, convert and the experiments build with these, and restore.py
rebuilds a finished run from its config.json with them, so a run is rebuilt exactly as it was
trained.
"""

from __future__ import annotations

import os
import sys
import warnings

import jax
import ml_collections
import numpy as np
import optax

from resnet_jax import data, errors, runtime
from resnet_jax.cpu import onednn
from resnet_jax.nn import trace
from resnet_jax.nn.models import DTYPES, get_model
from resnet_jax.training import finetune, optim, parallel, train


def validate_config(
    config: ml_collections.ConfigDict, *, device_count: int, process_count: int
) -> None:
    """Raise ValueError naming the field for any value that cannot run; silent when all is well."""
    t, o, d = config.train, config.optim, config.data

    def check(ok: bool, field: str, why: str) -> None:
        if not ok:
            raise errors.UserError(
                f"config.{field}={config[field.split('.')[0]][field.split('.')[1]]!r}: {why}"
            )

    check(t.parallel in parallel.MODES, "train.parallel", f"use one of {parallel.MODES}")
    check(
        t.parallel != "single" or process_count == 1,
        "train.parallel",
        f"'single' runs one process; this run has {process_count}: use 'pmap' or 'sharding'",
    )
    check(t.dtype in DTYPES, "train.dtype", f"use one of {sorted(DTYPES)}")
    check(t.conv_impl in runtime.CONV_IMPLS, "train.conv_impl", f"use one of {runtime.CONV_IMPLS}")
    if t.conv_impl == "onednn":
        check(
            onednn.available(),
            "train.conv_impl",
            f"oneDNN convolutions cannot run here ({onednn.why_unavailable()}); "
            "use 'auto' or 'xla'",
        )
    for field in ("steps", "eval_every", "checkpoint_every", "log_every", "keep_checkpoints"):
        check(t[field] >= 1, f"train.{field}", "must be >= 1")
    devices = 1 if t.parallel == "single" else device_count
    for field in ("batch_size", "eval_batch_size"):
        check(
            d[field] >= 1 and d[field] % devices == 0,
            f"data.{field}",
            f"must be a positive multiple of the {devices} device(s) of parallel={t.parallel!r}",
        )
    for field in ("seed", "split_seed"):
        check(d[field] >= 0, f"data.{field}", "must be a non-negative integer")
    check(t.seed >= 0, "train.seed", "must be a non-negative integer")
    check(d.augment in data.AUGMENTATIONS, "data.augment", f"use one of {data.AUGMENTATIONS}")
    try:
        data.parse_auto_augment(d.auto_augment)
    except ValueError as error:
        check(False, "data.auto_augment", str(error))
    for field in ("cutout", "mixup", "cutmix"):
        check(d[field] >= 0, f"data.{field}", "must be >= 0 (0 turns it off)")
    check(
        profile_steps(t.profile, t.stop_after or t.steps) is not None or not t.profile,
        "train.profile",
        f"give START:COUNT with 1 <= START and the COUNT steps inside the run's "
        f"{t.stop_after or t.steps} steps, e.g. '10:5'",
    )
    check(
        0 <= t.stop_after <= t.steps,
        "train.stop_after",
        f"must lie in [0, train.steps={t.steps}] (0 runs to the end)",
    )
    check(
        t.accumulate_steps >= 1 and t.steps % t.accumulate_steps == 0,
        "train.accumulate_steps",
        f"batches per update: must be >= 1 and divide train.steps={t.steps}",
    )
    check(
        not config.init.reset_head or bool(config.init.weights),
        "init.reset_head",
        "re-initialises the classifier of loaded weights: give config.init.weights too",
    )
    check(o.name in optim.OPTIMIZERS, "optim.name", f"use one of {optim.OPTIMIZERS}")
    check(o.schedule in optim.SCHEDULES, "optim.schedule", f"use one of {optim.SCHEDULES}")
    check(o.lr > 0, "optim.lr", "must be > 0")
    check(
        0 <= o.warmup_steps < t.steps,
        "optim.warmup_steps",
        f"must lie in [0, train.steps={t.steps})",
    )
    check(
        len(o.boundaries) == len(o.scales),
        "optim.scales",
        f"needs one factor per boundary; optim.boundaries={o.boundaries!r}",
    )
    check(
        list(o.boundaries) == sorted(set(o.boundaries))
        and all(0 < b < t.steps for b in o.boundaries),
        "optim.boundaries",
        f"must be increasing steps inside (0, train.steps={t.steps})",
    )
    check(0 <= o.momentum < 1, "optim.momentum", "must lie in [0, 1)")
    check(0 <= o.beta2 < 1, "optim.beta2", "must lie in [0, 1)")
    check(o.weight_decay >= 0, "optim.weight_decay", "must be >= 0")
    check(0 <= o.label_smoothing < 1, "optim.label_smoothing", "must lie in [0, 1)")
    check(o.grad_clip >= 0, "optim.grad_clip", "must be >= 0 (0 turns clipping off)")
    check(0 <= o.ema < 1, "optim.ema", "is the EMA decay: must lie in [0, 1) (0 turns it off)")
    try:
        parts = finetune.parts(get_model(**config.model))
    except (TypeError, ValueError) as error:
        raise errors.UserError(f"config.model: {error}") from None
    check(
        all(part in parts for part in config.init.frozen),
        "init.frozen",
        f"use parts of the model: {parts}",
    )
    check(
        not (config.init.reset_head and "head" in config.init.frozen),
        "init.frozen",
        "would freeze the classifier that init.reset_head re-initialises",
    )


def check_model(
    model,
    image_shape: tuple[int, int, int],
    *,
    batch_size: int,
    dtype: str,
    allow_degenerate_maps: bool,
) -> list[trace.LayerRow]:
    """Trace the model's shapes (nothing compiles): a collapse raises naming the layer; a
    degenerate map is a visible warning; activations that cannot fit in memory are an error naming
    the largest layer."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            rows = trace.trace(model, (1, *image_shape))
        except ValueError as error:  # ShapeError included: a layer the config's sizes cannot build
            raise errors.UserError(f"config.model: {error}") from None
    if not allow_degenerate_maps:
        for warning in caught:
            print(
                f"warning: {warning.message} (config.train.allow_degenerate_maps=True silences "
                "this)",
                file=sys.stderr,
                flush=True,
            )
    # Forward activations are kept for the backward pass, and their gradients live beside them:
    # about twice the sum of every layer's output, per example, in the compute dtype.
    item = 2 if dtype == "bfloat16" else 4
    per_example = sum(int(np.prod(r.out_shape[1:])) for r in rows)
    needed, available = 2 * per_example * batch_size * item, memory_bytes()
    if available and needed > 0.8 * available:
        widest = max(rows, key=lambda r: int(np.prod(r.out_shape[1:])))
        raise errors.UserError(
            f"config.model: activations need about {needed / 2**30:.0f} GiB per step of "
            "data.batch_size="
            f"{batch_size}, more than this device's {available / 2**30:.0f} GiB; the largest is "
            "layer "
            f"'{widest.name}' with output {list(widest.out_shape[1:])} per image (check its "
            "padding, kernel and "
            f"stride fields, or lower data.batch_size)"
        )
    return rows


def memory_bytes() -> int | None:
    """Memory of the first device: the GPU's or TPU's limit, the machine's RAM on the CPU; None if
    unknown."""
    device = jax.devices()[0]
    if device.platform == "cpu":
        try:
            return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError):
            return None
    stats = device.memory_stats() or {}
    return stats.get("bytes_limit")


def profile_steps(text: str, steps: int) -> tuple[int, int] | None:
    """train.profile's "START:COUNT" as (first, last) step traced, or None (off, or not inside the
    run's `steps`)."""
    start, colon, count = (text or "").partition(":")
    if not (colon and start.isdigit() and count.isdigit()):
        return None
    first, last = int(start), int(start) + int(count) - 1
    return (first, last) if 1 <= first <= last <= steps else None


def model(config: ml_collections.ConfigDict, num_classes: int, conv_backend=None):
    """The config's ResNet for `num_classes` classes, in the run's compute dtype, its frozen parts'
    BatchNorm statistics kept (init.frozen); unset fields (None) keep the family's defaults."""
    return get_model(
        **config.model,
        num_classes=num_classes,
        dtype=DTYPES[config.train.dtype],
        conv_backend=conv_backend,
        frozen_norm=tuple(config.init.frozen),
    )


def load_data(d: ml_collections.ConfigDict) -> data.Dataset:
    """The config's data set; a wrong name, path or file is a UserError naming the field."""
    # An empty path means none, so that `--config.data.path=` switches a config from files to TFDS.
    try:
        return data.load(
            d.name,
            data_dir=d.data_dir or None,
            manual_dir=d.manual_dir or None,
            path=d.path or None,
            split_seed=d.split_seed,
            eval_fraction=d.eval_fraction,
            image_size=d.image_size,
            in_memory=d.in_memory,
        )
    except (ValueError, FileNotFoundError, NotADirectoryError) as error:
        raise errors.UserError(f"config.data (name={d.name!r}, path={d.path!r}): {error}") from None


def data_shape(d: ml_collections.ConfigDict) -> data.DataShape:
    """The image shape and class count of the config's data set, from its info (no image read);
    errors as load_data's."""
    try:
        return data.shape_of(
            d.name, data_dir=d.data_dir or None, path=d.path or None, image_size=d.image_size
        )
    except (ValueError, FileNotFoundError, NotADirectoryError) as error:
        raise errors.UserError(f"config.data (name={d.name!r}, path={d.path!r}): {error}") from None


def optimizer(
    o: ml_collections.ConfigDict,
    *,
    steps: int,
    accumulate_steps: int = 1,
    frozen: tuple[str, ...] = (),
) -> optim.Optimizer:
    """The optax update and its learning-rate schedule from config.optim, for a run of `steps`
    batches.

    With accumulate_steps = k > 1, optax.MultiSteps averages k batches' gradients into one update;
    the schedule still counts batches (the inner optimizer's update c happens at batch c * k).
    Frozen parts get no updates.
    """
    lr_fn = optim.learning_rate_schedule(
        o.schedule,
        lr=o.lr,
        total_steps=steps,
        warmup_steps=o.warmup_steps,
        boundaries=o.boundaries,
        scales=o.scales,
    )
    update_lr = lr_fn if accumulate_steps == 1 else (lambda count: lr_fn(count * accumulate_steps))
    tx = optim.make_optimizer(
        o.name,
        update_lr,
        momentum=o.momentum,
        nesterov=o.nesterov,
        beta2=o.beta2,
        weight_decay=o.weight_decay,
        exclude_bn_and_bias=o.exclude_bn_and_bias,
        grad_clip=o.grad_clip,
    )
    tx = finetune.freeze(tx, frozen)
    if accumulate_steps > 1:
        tx = optax.MultiSteps(tx, every_k_schedule=accumulate_steps).gradient_transformation()
    return optim.Optimizer(tx, lr_fn)


def run_optimizer(config: ml_collections.ConfigDict) -> optim.Optimizer:
    """`optimizer` for a whole run's config (main's, or a workdir's config.json)."""
    # A config.json written before train.accumulate_steps and config.init existed ran without them.
    accumulate = config.train.get("accumulate_steps", 1)
    frozen = tuple(config.init.frozen) if "init" in config else ()
    return optimizer(
        config.optim, steps=config.train.steps, accumulate_steps=accumulate, frozen=frozen
    )


def recipe(config: ml_collections.ConfigDict) -> train.Recipe:
    """What the train step does beyond the plain update, from a validated config."""
    return train.Recipe(
        label_smoothing=config.optim.label_smoothing,
        ema_decay=config.optim.ema,
        mixup=config.data.mixup,
        cutmix=config.data.cutmix,
        frozen=tuple(config.init.frozen),
    )
