"""Evaluate a trained run: a checkpoint of a workdir on its held-out (test) split, every example
exactly once.

    python -m resnet_jax.evaluate --workdir=DIR  # the latest checkpoint, EMA weights if kept
    python -m resnet_jax.evaluate --workdir=DIR --step=7800 --raw --flip
    python -m resnet_jax.evaluate --weights=resnet18.pth --config=configs/imagenet.py:resnet18
    python -m resnet_jax.evaluate --workdir=DIR --follow --flip  # each checkpoint as it lands

With --workdir, reads the run's config.json, so the data, model and normalisation are the run's
own. With
--weights (a .npz, .safetensors or torchvision .pth, or a run's checkpoint), the --config file (and
its `--config.…` overrides) names the data and the model. Reports top-1, top-5, loss and per-class
accuracy, and writes DIR/eval/step_N[_raw][_flip].json (with --weights: eval/NAME[_flip].json beside
the file, or in
--output_dir) with those numbers and the confusion matrix, and a PNG of the matrix beside it.
`--flip` averages the logits of each image and its mirror (test-time augmentation).
`--follow` watches a run that trains (here or on another machine: a gs:// workdir) and evaluates
each new checkpoint once, into DIR/eval_NAME/ (TensorBoard events and metrics.jsonl, beside the
run's own: `tensorboard --logdir=DIR` shows both); `--data=FIELD=VALUE` evaluates another file or
data set with the same classes.
"""

from __future__ import annotations

import ast
import json
import os
import time
from pathlib import Path

import numpy as np
from absl import flags
from etils import epath
from ml_collections import config_flags

from resnet_jax import build, data, errors, restore, runtime
from resnet_jax.nn.models import DTYPES, get_model
from resnet_jax.training import evaluation, metrics, paths
from resnet_jax.training.checkpoint import finished_steps

FLAGS = flags.FLAGS
# The fields of config.data that choose which examples `--follow --data=...` evaluates.
EVAL_DATA_FIELDS = (
    "name",
    "path",
    "data_dir",
    "manual_dir",
    "split_seed",
    "eval_fraction",
    "image_size",
)


def define_flags() -> None:
    """The command's flags, defined when it runs (importing this module defines none)."""
    flags.DEFINE_string("workdir", None, "A workdir of python -m resnet_jax.main.")
    flags.DEFINE_string(
        "weights",
        None,
        "A weight file (.npz, .safetensors, .pth) or a run's checkpoint directory, "
        "evaluated with the model and data of --config.",
    )
    config_flags.DEFINE_config_file(
        "config",
        None,
        "With --weights: the config file naming the data and the model, "
        "e.g. configs/cifar10.py:resnet20.",
        lock_config=True,
    )
    flags.DEFINE_string(
        "output_dir",
        None,
        "With --weights: where the JSON and the plot go (default: an eval/ folder "
        "beside the weights).",
    )
    flags.DEFINE_integer("step", None, "The checkpoint's step (default: the latest intact one).")
    flags.DEFINE_bool(
        "raw", False, "Evaluate the raw weights even when the run kept an EMA of them."
    )
    flags.DEFINE_bool("flip", False, "Average the logits of each image and its left-right mirror.")
    flags.DEFINE_integer("batch_size", 500, "Examples per evaluation batch.")
    flags.DEFINE_bool(
        "follow",
        False,
        "With --workdir: evaluate each checkpoint of the run as it lands (once each, also across "
        "restarts: DIR/eval_NAME/metrics.jsonl and TensorBoard events), until its last step; a run "
        "on another machine too.",
    )
    flags.DEFINE_multi_string(
        "data",
        [],
        "--follow: FIELD=VALUE of the run's config.data to evaluate on instead (another file or "
        "data set with the same classes), e.g. --data=path=/data/cifar10_test_v2.npz. Repeatable.",
    )
    flags.DEFINE_string(
        "name", None, "--follow: the folder DIR/eval_NAME (default: the data set's name + flags)."
    )
    flags.DEFINE_integer("poll_seconds", 30, "--follow: how often to look for a new checkpoint.")
    flags.DEFINE_integer(
        "follow_timeout",
        3600,
        "--follow: give up after this many seconds without a new checkpoint.",
    )


def evaluate(
    workdir: epath.Path, *, step: int | None, raw: bool, flip: bool, batch_size: int
) -> tuple[dict, epath.Path]:
    """Evaluate and write DIR/eval/step_N[_raw][_flip].{json,png}; returns the numbers and the
    JSON's path."""
    config, dataset, model, state = restore.restore_run(workdir, step)
    return report_run(config, dataset, model, state, workdir, raw, flip, batch_size)


def report_run(config, dataset, model, state, workdir, raw, flip, batch_size):
    """Evaluate a run's restored state; write DIR/eval/step_N[_raw][_flip].{json,png}."""
    weights = "raw" if state.ema is None or raw else "ema"
    name = (
        f"step_{int(state.step)}"
        + ("_raw" if weights == "raw" and state.ema is not None else "")
        + ("_flip" if flip else "")
    )
    model_name = f"{config.model.name}{config.model.depth}"
    title = f"{dataset.info.name}, {model_name}, step {int(state.step)}, {weights}"
    about = {"workdir": str(workdir), "step": int(state.step), "weights": weights}
    return report(
        model,
        evaluation.variables_of(state, raw=raw),
        dataset,
        about,
        workdir / "eval" / name,
        title=title,
        flip=flip,
        batch_size=batch_size,
    )


def follow(
    workdir: epath.Path,
    *,
    raw: bool,
    flip: bool,
    batch_size: int,
    poll_seconds: float,
    timeout: float,
    data_overrides: dict | None = None,
    name: str | None = None,
) -> list[int]:
    """Evaluate each finished checkpoint of a (running) run once, in step order, as `evaluate` does.

    Each result goes to DIR/eval_NAME/ as the run's own metrics do (eval/accuracy, eval/top5,
    eval/loss into TensorBoard events and metrics.jsonl), so TensorBoard shows the follower beside
    the run; a restarted follower reads that metrics.jsonl and skips the steps it holds. NAME is the
    data set's name (+ '_flip', '_raw'), or `name`. `data_overrides` ({field: value} of config.data)
    evaluate on another data set or file with the same classes. Returns when the run's last step
    (train.stop_after or train.steps) is evaluated; a RunError after `timeout` seconds without a
    new checkpoint (or without the run's config.json).
    """
    evaluated, deadline, dataset, writer, done = [], time.monotonic() + timeout, None, None, set()
    try:
        while True:
            if (workdir / "config.json").exists():
                recorded = json.loads((workdir / "config.json").read_text())
                last = recorded["train"].get("stop_after") or recorded["train"]["steps"]
                if writer is None:
                    data_name = {**recorded["data"], **(data_overrides or {})}["name"]
                    name = name or follow_name(data_name, raw=raw, flip=flip)
                    log = workdir / f"eval_{name}" / metrics.JSONL
                    done = {json.loads(row)["step"] for row in metrics.complete_lines(log)}
                    # start after the last logged step: TensorBoard hides events from start_step on
                    writer = metrics.MetricWriter(log.parent, start_step=max(done, default=0) + 1)
                todo = [s for s in finished_steps(workdir / "checkpoints") if s not in done]
                if last in done and not todo:
                    return evaluated
                progressed = False
                for step in todo:
                    try:
                        config, model, state = restore.restore_checkpoint(workdir, step)
                    except errors.UserError:  # not readable yet, or removed by keep_checkpoints:
                        break  # the next poll lists it again or not
                    config.data.update(data_overrides or {})
                    dataset = dataset or build.load_data(config.data)
                    result, _ = report_run(
                        config, dataset, model, state, workdir, raw, flip, batch_size
                    )
                    scalars = {
                        "accuracy": result["top1"],
                        "top5": result["top5"],
                        "loss": result["loss"],
                    }
                    writer.write(step, {f"eval/{k}": v for k, v in scalars.items()})
                    print(
                        f"step {step}: top-1 {result['top1']:.4f} | loss {result['loss']:.4f}",
                        flush=True,
                    )
                    done.add(step)
                    evaluated.append(step)
                    deadline = time.monotonic() + timeout
                    progressed = True
                if progressed:
                    continue  # list the checkpoints again at once
            if time.monotonic() > deadline:
                raise errors.RunError(
                    f"--follow: no new checkpoint in {workdir} for {timeout:g} s (the last "
                    f"evaluated: {max(done) if done else 'none'}); rerun to go on, evaluated steps "
                    "are skipped"
                )
            time.sleep(poll_seconds)
    finally:
        if writer is not None:
            writer.close()


def parse_data(settings: list[str]) -> dict:
    """--data=FIELD=VALUE ... -> {FIELD: value} of config.data (a number where it reads as one, ''
    as None); a field that does not choose the evaluated examples is one line."""
    overrides = {}
    for setting in settings:
        field, equals, text = setting.partition("=")
        if not equals or field not in EVAL_DATA_FIELDS:
            raise errors.UserError(
                f"--data={setting}: give FIELD=VALUE, FIELD one of {', '.join(EVAL_DATA_FIELDS)}"
            )
        try:
            value = ast.literal_eval(text) if text else None
        except (ValueError, SyntaxError):
            value = text
        overrides[field] = value
    return overrides


def follow_name(data_name: str, *, raw: bool, flip: bool) -> str:
    """The folder a follower writes to, eval_NAME: the data set, then '_raw', '_flip' if set."""
    return data_name + ("_raw" if raw else "") + ("_flip" if flip else "")


def evaluate_weights(
    path: Path, config, *, output_dir: epath.Path | None, flip: bool, batch_size: int
) -> tuple[dict, Path]:
    """Evaluate a weight file (or checkpoint) with the config's model and data; write
    OUT/NAME[_flip].{json,png}."""
    dataset = build.load_data(config.data)
    try:
        model = get_model(
            **config.model, num_classes=dataset.info.num_classes, dtype=DTYPES[config.train.dtype]
        )
    except (TypeError, ValueError) as error:
        raise errors.UserError(f"config.model: {error}") from None
    variables = restore.load_weights(
        path, model, in_channels=dataset.info.image_shape[-1], field="--weights"
    )
    if path.is_file():
        out, name = output_dir or path.parent / "eval", path.name.split(".")[0]
    # a run's checkpoint: into its workdir's eval/, named apart from --workdir's own evaluations
    else:
        workdir, step = restore.checkpoint_location(path)
        out, name = (
            output_dir or workdir / "eval",
            f"weights_step_{step}" if step is not None else "weights_latest",
        )
    title = f"{dataset.info.name}, {config.model.name}{config.model.depth}, {path.name}"
    return report(
        model,
        variables,
        dataset,
        {"weights_file": str(path), "weights": "file"},
        out / (name + ("_flip" if flip else "")),
        title=title,
        flip=flip,
        batch_size=batch_size,
    )


def report(
    model,
    variables,
    dataset,
    about: dict,
    stem: epath.Path,
    *,
    title: str,
    flip: bool,
    batch_size: int,
) -> tuple[dict, epath.Path]:
    """Predict every example of the eval split once; write STEM.json and STEM_confusion.png."""
    logits, labels = evaluation.predict(
        model, variables, data.eval_batches(dataset, batch_size=batch_size), flip=flip
    )
    if len(labels) != dataset.info.num_eval:
        raise errors.RunError(
            f"evaluated {len(labels)} examples of the {dataset.info.num_eval} in the split"
        )
    result = {
        **about,
        "flip": flip,
        "data": dataset.info.name,
        **evaluation.metrics(logits, labels, dataset.info.num_classes),
    }
    paths.make_dirs(stem.parent)
    path = stem.with_name(stem.name + ".json")
    path.write_text(json.dumps(result, indent=1) + "\n")
    title += f"{' + flip' if flip else ''}: top-1 {100 * result['top1']:.2f}%"
    evaluation.plot_confusion(
        np.asarray(result["confusion"]), stem.with_name(stem.name + "_confusion.png"), title
    )
    return result, path


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise errors.UserError(f"unexpected arguments {argv[1:]}")
    if bool(FLAGS.workdir) == bool(FLAGS.weights):
        raise errors.UserError(
            "give --workdir (a resnet_jax.main run) or --weights (a weight file, with --config)"
        )
    if FLAGS.batch_size < 1:
        raise errors.UserError(f"--batch_size={FLAGS.batch_size}: must be >= 1")
    if FLAGS.weights and FLAGS.config is None:
        raise errors.UserError(
            f"--weights={FLAGS.weights}: needs --config, the config file naming the data and model"
        )
    if (FLAGS.data or FLAGS.name) and not FLAGS.follow:
        raise errors.UserError("--data and --name go with --follow")
    runtime.setup()
    if FLAGS.follow:
        if not FLAGS.workdir or FLAGS.step is not None:
            raise errors.UserError(
                "--follow goes with --workdir (every step), not --weights/--step"
            )
        follow(
            paths.run_path(FLAGS.workdir),
            raw=FLAGS.raw,
            flip=FLAGS.flip,
            batch_size=FLAGS.batch_size,
            poll_seconds=FLAGS.poll_seconds,
            timeout=FLAGS.follow_timeout,
            data_overrides=parse_data(FLAGS.data),
            name=FLAGS.name,
        )
        return
    if FLAGS.workdir:
        result, path = evaluate(
            paths.run_path(FLAGS.workdir),
            step=FLAGS.step,
            raw=FLAGS.raw,
            flip=FLAGS.flip,
            batch_size=FLAGS.batch_size,
        )
        what = f"step {result['step']} ({result['weights']} weights"
    else:
        output_dir = paths.run_path(FLAGS.output_dir) if FLAGS.output_dir else None
        result, path = evaluate_weights(
            Path(os.path.expanduser(FLAGS.weights)),
            FLAGS.config,
            output_dir=output_dir,
            flip=FLAGS.flip,
            batch_size=FLAGS.batch_size,
        )
        what = f"{FLAGS.weights} ({result['data']}"
    print(
        f"{what}{', flip' if result['flip'] else ''}) on {result['examples']} examples: top-1 "
        f"{result['top1']:.4f} | top-5 {result['top5']:.4f} | loss {result['loss']:.4f}  -> {path}",
        flush=True,
    )


if __name__ == "__main__":
    define_flags()
    errors.run_absl(main)
