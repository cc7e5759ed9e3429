"""Evaluate a trained run: a checkpoint of a workdir on its held-out (test) split, every example exactly once.

    python -m resnet_jax.evaluate --workdir=DIR                  # the latest checkpoint, EMA weights if kept
    python -m resnet_jax.evaluate --workdir=DIR --step=7800 --raw --flip

Reads the run's config.json, so the data, model and normalisation are the run's own; `--config.…`-style
changes are not needed for that. Reports top-1, top-5, loss and per-class accuracy, and writes
DIR/eval/step_N[_raw][_flip].json with those numbers and the confusion matrix, and a PNG of the matrix beside it.
`--flip` averages the logits of each image and its mirror (test-time augmentation).
"""
from __future__ import annotations

import json

import numpy as np
from absl import flags
from etils import epath

from resnet_jax import build, cli, data, runtime
from resnet_jax.training import evaluation, paths

flags.DEFINE_string("workdir", None, "A workdir of python -m resnet_jax.main.")
flags.DEFINE_integer("step", None, "The checkpoint's step (default: the latest intact one).")
flags.DEFINE_bool("raw", False, "Evaluate the raw weights even when the run kept an EMA of them.")
flags.DEFINE_bool("flip", False, "Average the logits of each image and its left-right mirror.")
flags.DEFINE_integer("batch_size", 500, "Examples per evaluation batch.")
FLAGS = flags.FLAGS


def evaluate(workdir: epath.Path, *, step: int | None, raw: bool, flip: bool, batch_size: int) -> tuple[dict, epath.Path]:
    """Evaluate and write DIR/eval/step_N[_raw][_flip].{json,png}; returns the numbers and the JSON's path."""
    config, dataset, model, state = build.restore_run(workdir, step)
    weights = "raw" if state.ema is None or raw else "ema"
    logits, labels = evaluation.predict(model, evaluation.variables_of(state, raw=raw),
                                        data.eval_batches(dataset, batch_size=batch_size), flip=flip)
    if len(labels) != dataset.info.num_eval:
        raise cli.RunError(f"evaluated {len(labels)} examples of the {dataset.info.num_eval} in the split")
    result = {"workdir": str(workdir), "step": int(state.step), "weights": weights, "flip": flip,
              "data": dataset.info.name, **evaluation.metrics(logits, labels, dataset.info.num_classes)}
    out = workdir / "eval"
    paths.make_dirs(out)
    name = f"step_{int(state.step)}" + ("_raw" if weights == "raw" and state.ema is not None else "") + \
        ("_flip" if flip else "")
    path = out / f"{name}.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    title = (f"{dataset.info.name}, {config.model.name}{config.model.depth}, step {int(state.step)}, {weights}"
             f"{' + flip' if flip else ''}: top-1 {100 * result['top1']:.2f}%")
    evaluation.plot_confusion(np.asarray(result["confusion"]), out / f"{name}_confusion.png", title)
    return result, path


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise cli.UserError(f"unexpected arguments {argv[1:]}")
    if not FLAGS.workdir:
        raise cli.UserError("--workdir is required: the workdir of a resnet_jax.main run")
    runtime.setup()
    result, path = evaluate(paths.run_path(FLAGS.workdir), step=FLAGS.step, raw=FLAGS.raw,
                            flip=FLAGS.flip, batch_size=FLAGS.batch_size)
    print(f"step {result['step']} ({result['weights']} weights{', flip' if result['flip'] else ''}) on "
          f"{result['examples']} examples: top-1 {result['top1']:.4f} | top-5 {result['top5']:.4f} | "
          f"loss {result['loss']:.4f}  -> {path}", flush=True)


if __name__ == "__main__":
    cli.run_absl(main)
