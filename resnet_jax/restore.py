"""Weights and finished runs read back: a weight file of either format or a run's checkpoint,
checked key by key against a model; and a run rebuilt from its workdir (config.json and a
checkpoint), exactly as it was trained.

    model, variables = restore.load_params("~/runs/cifar10_resnet20")     # for a notebook
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import ml_collections
from etils import epath

from resnet_jax import build, errors, interop
from resnet_jax.nn.models import DTYPES, get_model
from resnet_jax.training import checkpoint, evaluation, paths, train


def init_weights(config: ml_collections.ConfigDict, model, *, in_channels: int) -> dict | None:
    """The weights config.init names, for `model` (without the head when init.reset_head), or
    None."""
    if not config.init.weights:
        return None
    return load_weights(
        config.init.weights,
        model,
        in_channels=in_channels,
        field="config.init.weights",
        reset_head=config.init.reset_head,
    )


def checkpoint_location(path: Path | epath.Path) -> tuple[Path | epath.Path, int | None]:
    """(workdir, step) of `DIR/checkpoints/N` (that step) or of a workdir `DIR` (None: the
    latest)."""
    if path.parent.name == "checkpoints" and path.name.isdigit():
        return path.parent.parent, int(path.name)
    if (path / "config.json").is_file():
        return path, None
    raise errors.UserError(
        f"{path}: neither a run's checkpoint (WORKDIR/checkpoints/STEP) nor a workdir with a "
        f"config.json"
    )


def _checkpoint_shapes(directory: epath.Path, step: int) -> dict[str, tuple[int, ...]]:
    """{'.params['head']['kernel']': (512, 10), ...}: the shapes recorded with a checkpoint
    (checkpoint.structure)."""
    try:
        structure = json.loads((directory / str(step) / "meta" / "metadata").read_text())[
            "structure"
        ]
    except (OSError, ValueError, KeyError) as error:
        raise errors.UserError(
            f"{directory / str(step)}: cannot read the checkpoint's metadata ({error})"
        ) from None
    shapes = {}
    for entry in structure:  # "path:dtype:(a, b)"
        path, _, shape = entry.rsplit(":", 2)
        shapes[path] = tuple(int(n) for n in shape.strip("()").split(",") if n.strip())
    return shapes


def restore_checkpoint(workdir: epath.Path, step: int | None = None):
    """(config, model, state) of a run's checkpoint (`step`, or the latest intact one), without its
    data set: the class count and image channels come from the shapes saved with the checkpoint."""
    config_file = workdir / "config.json"
    if not config_file.is_file():
        raise errors.UserError(
            f"{workdir}: no config.json there; give the workdir of a resnet_jax.main run"
        )
    config = ml_collections.ConfigDict(json.loads(config_file.read_text()))
    # Read only: the run may still be training (evaluate --follow), its save in progress untouched.
    checkpoints = checkpoint.Checkpoints(
        str(workdir / "checkpoints"), keep=config.train.keep_checkpoints, read_only=True
    )
    try:
        steps = checkpoints.steps()
        if not steps:
            raise errors.UserError(f"{workdir}: no checkpoint there yet")
        if step is not None and step not in steps:
            raise errors.UserError(
                f"no checkpoint of step {step} in {checkpoints.directory}; "
                f"there are {sorted(steps)}"
            )
        shapes = _checkpoint_shapes(checkpoints.directory, max(steps) if step is None else step)
        num_classes, channels = (
            shapes[".params['head']['kernel']"][-1],
            shapes[".params['stem_conv']['kernel']"][2],
        )
        # JSON's lists
        fields = {k: tuple(v) if isinstance(v, list) else v for k, v in config.model.items()}
        model = get_model(**fields, num_classes=num_classes, dtype=DTYPES[config.train.dtype])
        update = build.run_optimizer(config)
        fresh = jax.device_get(
            train.create_train_state(
                model,
                update.tx,
                jax.random.key(0),
                image_shape=(32, 32, channels),
                ema=config.optim.ema > 0,
            )
        )
        state = (
            checkpoints.restore_latest(fresh)
            if step is None
            else checkpoints.restore_step(step, fresh)
        )
    except ValueError as error:
        if isinstance(error, errors.UserError):
            raise
        raise errors.UserError(f"--step={step}: {error}") from None
    finally:
        checkpoints.close()
    return config, model, state


def load_params(workdir: str | epath.Path, step: int | None = None, *, raw: bool = False):
    """(model, variables) of a trained run, for a notebook or your own code: the weights the run
    evaluates (its EMA when it kept one, the trained ones with raw=True) at `step`, or its latest
    intact checkpoint.

        model, variables = load_params("~/runs/cifar10_resnet20") # images float32 [N, H, W, C],
        normalised
        logits = model.apply(variables, images, train=False)
    """
    _, model, state = restore_checkpoint(paths.run_path(workdir), step)
    return model, evaluation.variables_of(state, raw=raw)


def restore_run(workdir: epath.Path, step: int | None = None):
    """(config, dataset, model, state) of a run's checkpoint (`step`, or the latest intact one)."""
    config, model, state = restore_checkpoint(workdir, step)
    dataset = build.load_data(config.data)
    if model.num_classes != dataset.info.num_classes:
        raise errors.UserError(
            f"--workdir={workdir}: the checkpoint classifies {model.num_classes} classes, its data "
            f"set {dataset.info.name} has {dataset.info.num_classes}"
        )
    return config, dataset, model, state


def weight_arrays(path: str | Path) -> dict:
    """A weight file's arrays (torchvision's keys or ours), or the weights a run's checkpoint
    (WORKDIR/checkpoints/N, or a workdir: its latest) evaluates, its EMA when it kept one, flattened
    in our format."""
    path = Path(path)
    if path.is_dir() or path.parent.name == "checkpoints":
        _, _, state = restore_checkpoint(*checkpoint_location(path))
        return interop.flatten_variables(evaluation.variables_of(state, raw=False))
    return interop.load_arrays(path)[0]


def load_weights(
    path: str | Path, model, *, in_channels: int, field: str, reset_head: bool | None = None
) -> dict:
    """{'params', 'batch_stats'} for `model` from `path` (see weight_arrays), checked key by key
    and shape by shape; with `reset_head` the classifier is left out (the caller initialises it
    afresh). A class count that differs from the model's is an error unless reset_head is True
    (None: resetting is not an option here)."""
    where = f"{field}={path}"
    try:
        arrays = weight_arrays(path)
    except (OSError, ValueError) as error:
        raise errors.UserError(f"{where}: {errors.describe(error)}") from None
    classes = interop.num_classes_of(arrays) or model.num_classes
    if classes != model.num_classes and not reset_head:
        fix = (
            "set config.init.reset_head=True to train a new classifier"
            if reset_head is not None
            else "evaluate them on a data set with as many classes"
        )
        raise errors.UserError(
            f"{where}: the weights classify {classes} classes, the data set has "
            f"{model.num_classes}; {fix}"
        )
    try:
        variables = interop.variables_for(
            arrays, model.clone(num_classes=classes, conv_backend=None), in_channels=in_channels
        )
    except (interop.StateDictError, ValueError) as error:
        raise errors.UserError(f"{where}: {error}") from None
    if reset_head:
        variables["params"] = {
            name: value for name, value in variables["params"].items() if name != "head"
        }
    return variables
