"""From a validated config to the objects a run is made of: its data set and its optimizer; and a finished
run rebuilt from its workdir (config.json and a checkpoint).

The entry points (main, evaluate) and experiments share these, so a run is rebuilt from its config.json exactly
as it was trained.
"""
from __future__ import annotations

import json

import jax
import ml_collections
from etils import epath

from resnet_jax import cli, data
from resnet_jax.nn.models import DTYPES, get_model
from resnet_jax.training import checkpoint, optim, train


def load_data(d: ml_collections.ConfigDict) -> data.Dataset:
    """The config's data set; a wrong name, path or file is a UserError naming the field."""
    # An empty path means none, so that `--config.data.path=` switches a config from files to TFDS.
    try:
        return data.load(d.name, data_dir=d.data_dir or None, manual_dir=d.manual_dir or None,
                         path=d.path or None, split_seed=d.split_seed, eval_fraction=d.eval_fraction,
                         image_size=d.image_size, in_memory=d.in_memory)
    except (ValueError, FileNotFoundError, NotADirectoryError) as error:
        raise cli.UserError(f"config.data (name={d.name!r}, path={d.path!r}): {error}") from None


def optimizer(o: ml_collections.ConfigDict, *, steps: int) -> optim.Optimizer:
    """The optax update and its learning-rate schedule from config.optim, for a run of `steps` updates."""
    lr_fn = optim.learning_rate_schedule(o.schedule, lr=o.lr, total_steps=steps, warmup_steps=o.warmup_steps,
                                         boundaries=o.boundaries, scales=o.scales)
    tx = optim.make_optimizer(o.name, lr_fn, momentum=o.momentum, nesterov=o.nesterov, beta2=o.beta2,
                              weight_decay=o.weight_decay, exclude_bn_and_bias=o.exclude_bn_and_bias,
                              grad_clip=o.grad_clip)
    return optim.Optimizer(tx, lr_fn)


def restore_run(workdir: epath.Path, step: int | None = None):
    """(config, dataset, model, state) of a run's checkpoint (`step`, or the latest intact one)."""
    config_file = workdir / "config.json"
    if not config_file.is_file():
        raise cli.UserError(f"--workdir={workdir}: no config.json there; give the workdir of a resnet_jax.main run")
    config = ml_collections.ConfigDict(json.loads(config_file.read_text()))
    dataset = load_data(config.data)
    model = get_model(**config.model, num_classes=dataset.info.num_classes, dtype=DTYPES[config.train.dtype])
    update = optimizer(config.optim, steps=config.train.steps)
    fresh = jax.device_get(train.create_train_state(model, update.tx, jax.random.key(0),
                                                    image_shape=dataset.info.image_shape, ema=config.optim.ema > 0))
    checkpoints = checkpoint.Checkpoints(str(workdir / "checkpoints"), keep=config.train.keep_checkpoints)
    try:
        state = checkpoints.restore_latest(fresh) if step is None else checkpoints.restore_step(step, fresh)
    except ValueError as error:
        raise cli.UserError(f"--step={step}: {error}") from None
    finally:
        checkpoints.close()
    if state is None:
        raise cli.UserError(f"--workdir={workdir}: no checkpoint to evaluate yet")
    return config, dataset, model, state
