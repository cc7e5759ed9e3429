"""Training: the state, one pure train step and eval step, and the loop that feeds them.

    optimizer = optim.Optimizer(tx, lr_fn)
    state = create_train_state(model, optimizer.tx, jax.random.key(0), image_shape=(32, 32, 3),
    ema=False)
    state, metrics = train_step(state, batch, apply_fn=model.apply, optimizer=optimizer)

`train_and_evaluate` adds placement on devices (parallel.py), checkpoints that resume exactly
(checkpoint.py) and metrics (metrics.py). It reads no config: the entry point (main.py) passes
plain values.
"""

from __future__ import annotations

import collections
import contextlib
import functools
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from etils import epath
from jax.experimental import multihost_utils

from resnet_jax.training import (
    checkpoint,
    finetune,
    metrics,
    mixing,
    optim,
    parallel,
    paths,
    profiler,
    signals,
)

Batch = dict  # {'image': float32 [N, H, W, C], 'label': int32 [N], eval also 'mask': bool [N]}


class TrainState(NamedTuple):
    step: jax.Array  # int32 [], updates done so far
    params: Any  # float32, whatever the compute dtype
    batch_stats: Any  # BatchNorm running statistics, float32
    opt_state: optax.OptState
    ema: Any  # {'params', 'batch_stats'} moving average used for evaluation, or None when off


def create_train_state(
    model: nn.Module,
    tx: optax.GradientTransformation,
    rng: jax.Array,
    *,
    image_shape: tuple[int, int, int],
    ema: bool,
) -> TrainState:
    """Initialise parameters from `rng` for images of `image_shape` (H, W, C)."""
    images = jnp.zeros((1, *image_shape))
    # XLA:CPU's default optimisation level spends ~10 s on the random initialisers of even a tiny
    # ResNet; level 1 compiles them in ~1 s to the same bits, and init runs once.
    options = {"xla_backend_optimization_level": 1} if jax.default_backend() == "cpu" else None
    variables = (
        jax.jit(functools.partial(model.init, train=False))
        .lower(rng, images)
        .compile(options)(rng, images)
    )
    params, batch_stats = variables["params"], variables["batch_stats"]
    average = {"params": params, "batch_stats": batch_stats} if ema else None
    return TrainState(jnp.zeros((), jnp.int32), params, batch_stats, tx.init(params), average)


def cross_entropy(logits: jax.Array, labels: jax.Array, label_smoothing: float = 0.0) -> jax.Array:
    """Per-example softmax cross-entropy [N], against labels smoothed by `label_smoothing`: int [N]
    class indices, or float [N, classes] target distributions (mixed labels)."""
    targets = jax.nn.one_hot(labels, logits.shape[-1]) if labels.ndim == 1 else labels
    return optax.softmax_cross_entropy(logits, optax.smooth_labels(targets, label_smoothing))


class Recipe(NamedTuple):
    """What a train step does beyond the plain update (each off by default)."""

    label_smoothing: float = 0.0
    ema_decay: float = 0.0  # decay of the weights' moving average; 0 keeps none
    mixup: float = 0.0  # Beta(alpha, alpha) of mixup; 0 is off (mixing.py)
    cutmix: float = 0.0  # Beta(alpha, alpha) of CutMix; 0 is off
    frozen: tuple[
        str, ...
    ] = ()  # parts whose BatchNorm statistics stay (finetune.py; the optimizer zeroes
    # their updates)


def train_step(
    state: TrainState,
    batch: Batch,
    *,
    apply_fn: Callable,
    optimizer: optim.Optimizer,
    recipe: Recipe = Recipe(),  # noqa: B008 (an immutable NamedTuple)
    axis_name: str | None = None,
    rng: jax.Array | None = None,
) -> tuple[TrainState, dict[str, jax.Array]]:
    """One SGD update on `batch`; under pmap, gradients and metrics are averaged over `axis_name`.

    `recipe` adds label smoothing, the EMA, mixing and frozen parts; `rng` is the run's key for the
    steps, folded with the step (and the device under pmap) for mixing and drop-path.
    """
    key = jax.random.fold_in(jax.random.key(0) if rng is None else rng, state.step)
    if axis_name is not None:
        key = jax.random.fold_in(key, jax.lax.axis_index(axis_name))
    mix_key, drop_key = jax.random.split(key)
    images, mixed = batch["image"], None
    if recipe.mixup > 0 or recipe.cutmix > 0:
        mixed = mixing.mix(mix_key, images, mixup_alpha=recipe.mixup, cutmix_alpha=recipe.cutmix)
        images = mixed.images

    def loss_fn(params):
        logits, updates = apply_fn(
            {"params": params, "batch_stats": state.batch_stats},
            images,
            train=True,
            mutable=["batch_stats"],
            rngs={"drop_path": drop_key},
        )
        labels = (
            batch["label"]
            if mixed is None
            else mixing.mixed_targets(batch["label"], mixed, logits.shape[-1])
        )
        loss = cross_entropy(logits, labels, recipe.label_smoothing).mean()
        return loss, (logits, updates["batch_stats"])

    (loss, (logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    if axis_name is not None:
        grads = jax.lax.pmean(grads, axis_name)
    updates, opt_state = optimizer.tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    batch_stats = finetune.keep_frozen(state.batch_stats, batch_stats, recipe.frozen)
    ema = state.ema
    if ema is not None:
        ema = optim.ema_update(
            ema, {"params": params, "batch_stats": batch_stats}, recipe.ema_decay
        )
    metrics = {
        "loss": loss,
        "accuracy": jnp.mean(jnp.argmax(logits, -1) == batch["label"]),
        "learning_rate": optimizer.learning_rate(state.step),
        "grad_norm": optax.tree.norm(grads),
    }
    if axis_name is not None:
        metrics = jax.lax.pmean(metrics, axis_name)
    return TrainState(state.step + 1, params, batch_stats, opt_state, ema), metrics


def start_from(state: TrainState, variables: Any, tx: optax.GradientTransformation) -> TrainState:
    """`state` (host, step 0) with `variables` laid over its parameters and statistics; optimizer
    state and EMA start afresh from them."""
    fresh = {"params": state.params, "batch_stats": state.batch_stats}
    merged = finetune.overlay(fresh, {k: v for k, v in variables.items() if k in fresh})
    ema = merged if state.ema is not None else None
    return TrainState(
        state.step,
        merged["params"],
        merged["batch_stats"],
        jax.device_get(tx.init(merged["params"])),
        ema,
    )


def eval_step(
    state: TrainState, batch: Batch, *, apply_fn: Callable, axis_name: str | None = None
) -> dict[str, jax.Array]:
    """Sums of loss and correct predictions over the examples with mask=True (padding is masked
    out)."""
    variables = (
        state.ema
        if state.ema is not None
        else {"params": state.params, "batch_stats": state.batch_stats}
    )
    logits = apply_fn(variables, batch["image"], train=False)
    mask = batch["mask"].astype(jnp.float32)
    top5 = jax.lax.top_k(logits, min(5, logits.shape[-1]))[1]  # [N, 5] class indices, best first
    sums = {
        "loss": jnp.sum(cross_entropy(logits, batch["label"]) * mask),
        "correct": jnp.sum((jnp.argmax(logits, -1) == batch["label"]) * mask),
        "correct5": jnp.sum(jnp.any(top5 == batch["label"][:, None], axis=-1) * mask),
        "count": jnp.sum(mask),
    }
    if axis_name is not None:
        sums = jax.lax.psum(sums, axis_name)
    return sums


def evaluate(
    step_fn: Callable, state: Any, batches: Iterable[Batch], placement: parallel.Placement
) -> dict[str, float]:
    """Mean loss, accuracy and top-5 accuracy over one pass of `batches` (this process's rows of
    each global batch)."""
    totals = collections.Counter()
    for batch in batches:
        totals.update(placement.to_host(step_fn(state, placement.put_batch(batch))))
    count = max(float(totals["count"]), 1.0)
    return {
        "eval/loss": float(totals["loss"]) / count,
        "eval/accuracy": float(totals["correct"]) / count,
        "eval/top5": float(totals["correct5"]) / count,
    }


def _prefetch(batches: Iterator[Batch], put: Callable, size: int = 2) -> Iterator[Any]:
    """Keep `size` batches on their way to the devices while the current step runs."""
    queue = collections.deque()
    for batch in batches:
        queue.append(put(batch))
        if len(queue) >= size:
            yield queue.popleft()
    while queue:
        yield queue.popleft()


def _summarise(pending: list[tuple[int, dict]], placement: parallel.Placement) -> dict[str, float]:
    """Mean of the train metrics since the last summary; raises on the first step whose loss is not
    finite."""
    rows = [(step, placement.to_host(m)) for step, m in pending]
    for step, row in rows:
        if not np.isfinite(row["loss"]):
            raise FloatingPointError(
                f"Training diverged: loss is {row['loss']} at step {step} (learning rate "
                f"{row['learning_rate']:.3g}). Stopped without saving; the last checkpoint, if "
                "any, is from before. "
                f"Lower optim.lr, add warmup or gradient clipping."
            )
    return {f"train/{name}": float(np.mean([row[name] for _, row in rows])) for name in rows[0][1]}


def _agreed_stop(stop_requested: Callable[[], str | None]) -> str | None:
    """The signal that asked this run to stop, agreed over all processes (any one asking stops them
    all)."""
    name = stop_requested()
    if jax.process_count() == 1:
        return name
    asked = multihost_utils.process_allgather(np.int32(name is not None))
    return (name or "a signal to another process") if np.any(asked) else None


def _print(line: str) -> None:
    """Progress for the person watching: stdout of process 0 only."""
    if jax.process_index() == 0:
        print(line, flush=True)


class Input(NamedTuple):
    """What the loop reads."""

    # start_step -> this process's rows of global batches
    train_batches: Callable[[int], Iterator[Batch]]
    eval_batches: Callable[[], Iterable[Batch]]  # one padded pass over the eval split, with 'mask'
    image_shape: tuple[int, int, int]  # (H, W, C)
    batch_size: int  # global, over all processes


class Loop(NamedTuple):
    """How long to train, and how often to log, evaluate and save, in steps."""

    steps: int
    eval_every: int
    checkpoint_every: int
    log_every: int
    keep_checkpoints: int = 3
    # stop (evaluated and saved) after this step, schedules still spanning `steps`; 0: at `steps`
    stop_after: int = 0
    # (first, last) step of a jax.profiler trace into WORKDIR/profile; None: no trace
    profile: tuple[int, int] | None = None


def train_and_evaluate(
    *,
    model: nn.Module,
    optimizer: optim.Optimizer,
    data: Input,
    loop: Loop,
    workdir: str | epath.Path,
    seed: int = 0,
    parallel_mode: str = "single",
    recipe: Recipe = Recipe(),  # noqa: B008 (an immutable NamedTuple)
    stop_requested: Callable[[], str | None] = lambda: None,
    init: Any = None,
    hparams: dict[str, Any] | None = None,
) -> tuple[TrainState, dict[str, float]]:
    """Train for `loop.steps` updates (or until `loop.stop_after`), resuming from workdir's latest
    intact checkpoint if there is one.

    Without a checkpoint the run starts from `init` ({'params', 'batch_stats'} to lay over the
    random initialisation, e.g. all but the head) when given; `recipe` is what each step does beyond
    the update.

    `stop_requested()` names a signal once one asked the run to stop (signals.stop_requests): the
    loop then saves the step it finished and raises signals.Stopped. `hparams` (flat name -> value)
    are recorded in the TensorBoard events for the HParams dashboard.

    Returns the final state (host NumPy, one copy) and the last train and eval metrics.
    """
    steps, eval_every, checkpoint_every, log_every = (
        loop.steps,
        loop.eval_every,
        loop.checkpoint_every,
        loop.log_every,
    )
    last = loop.stop_after or steps  # the first epochs of a long schedule end here, as if preempted
    placement = parallel.Placement(parallel_mode)
    model = placement.model(model)
    # initialises the model; fold_in(root, 1) is the steps' key (mixing, drop-path)
    root = jax.random.key(seed)
    fresh = create_train_state(
        model, optimizer.tx, root, image_shape=data.image_shape, ema=recipe.ema_decay > 0
    )
    checkpoints = checkpoint.Checkpoints(
        paths.run_path(workdir) / "checkpoints", keep=loop.keep_checkpoints
    )
    restored = checkpoints.restore_latest(target=jax.device_get(fresh))
    host_state = jax.device_get(fresh) if restored is None else restored
    if restored is None and init is not None:
        host_state = start_from(host_state, init, optimizer.tx)
    start = int(host_state.step)
    if start:
        logging.info("Resuming from the checkpoint at step %d in %s.", start, workdir)
    p_train = placement.compile(
        functools.partial(
            train_step,
            apply_fn=model.apply,
            optimizer=optimizer,
            recipe=recipe,
            rng=jax.random.fold_in(root, 1),
            axis_name=placement.axis_name,
        ),
        donate_state=True,
    )
    p_eval = placement.compile(
        functools.partial(eval_step, apply_fn=model.apply, axis_name=placement.axis_name),
        donate_state=False,
    )
    writer = metrics.MetricWriter(
        workdir, start_step=start, enabled=jax.process_index() == 0, hparams=hparams
    )
    progress = metrics.Progress(total_steps=last, batch_size=data.batch_size, start_step=start)
    state, pending, train_metrics, eval_metrics = placement.put_state(host_state), [], {}, {}
    tracer = None
    try:
        batches = _prefetch(data.train_batches(start), placement.put_batch)
        # `step` counts updates done once this one is applied
        for step in range(start + 1, last + 1):
            if loop.profile and step == loop.profile[0]:
                tracer = profiler.Trace(workdir)
            state, step_metrics = p_train(state, next(batches))
            if tracer and step == loop.profile[1]:
                tracer.stop(state)
                tracer = None
            checkpoints.check()  # a background write that failed stops the run at the next step
            pending.append((step, step_metrics))
            log_due, eval_due = (
                step % log_every == 0 or step == last,
                step % eval_every == 0 or step == last,
            )
            # Every process must stop at the same step: with several, they agree when they log.
            stopping = _agreed_stop(stop_requested) if jax.process_count() == 1 or log_due else None
            save_due = step % checkpoint_every == 0 or step == last or stopping is not None
            # reading the metrics stops a diverged run before eval or save
            if log_due or eval_due or save_due:
                train_metrics, pending = _summarise(pending, placement), []
                speed, eta = progress.update(step)
                train_metrics["train/images_per_second"] = speed
                writer.write(step, train_metrics)
                shown = {
                    k: train_metrics[f"train/{k}"] for k in ("loss", "accuracy", "learning_rate")
                }
                _print(metrics.progress_line(step, last, shown, speed, eta))
            if eval_due:
                eval_metrics = evaluate(p_eval, state, data.eval_batches(), placement)
                writer.write(step, eval_metrics)
                _print(
                    f"step {step}: eval loss {eval_metrics['eval/loss']:.4f}, "
                    f"accuracy {eval_metrics['eval/accuracy']:.4f}, top-5 "
                    f"{eval_metrics['eval/top5']:.4f}"
                )
            if save_due:
                checkpoints.save(step, placement.to_host(state))
            if stopping is not None:
                raise signals.Stopped(stopping, step)
            if eval_due or save_due or step == start + 1:
                jax.block_until_ready(state)
                # speed counts training only, not compiling, evaluating or saving
                progress.restart(step)
        if start >= last:  # the run was already complete: report where it ended
            eval_metrics = evaluate(p_eval, state, data.eval_batches(), placement)
        final = placement.to_host(state), {**train_metrics, **eval_metrics}
    except signals.Stopped:
        if tracer:
            tracer.stop(state)
        writer.close()
        checkpoints.close()  # the checkpoint of the last step is complete before the process stops
        raise
    except BaseException:
        writer.close()
        # the error already on its way matters more
        with contextlib.suppress(checkpoint.CheckpointError):
            checkpoints.close(timeout=30)
        raise
    writer.close()
    checkpoints.close()  # raises if the last save failed or hangs
    return final
