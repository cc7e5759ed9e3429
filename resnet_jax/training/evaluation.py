"""After training: the weights a run evaluates, its predictions over a split, and the numbers and
the confusion matrix a researcher reports (used by `python -m resnet_jax.evaluate` and the
experiments)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from etils import epath

from resnet_jax.training import train


def variables_of(state: train.TrainState, *, raw: bool) -> dict[str, Any]:
    """The weights a run evaluates: its EMA when it kept one (unless `raw`), else the trained
    ones."""
    if state.ema is not None and not raw:
        return state.ema
    return {"params": state.params, "batch_stats": state.batch_stats}


def predict(model, variables, batches, *, flip: bool):
    """(logits float32 [M, classes], labels int32 [M]) over the examples with mask True, in
    order."""

    @jax.jit
    def logits_of(images):
        logits = model.apply(variables, images, train=False)
        if flip:  # [N, H, W, C]: W reversed is the mirror image
            logits = (logits + model.apply(variables, images[:, :, ::-1], train=False)) / 2
        return logits

    outputs, labels = [], []
    for batch in batches:
        keep = np.asarray(batch["mask"])
        outputs.append(np.asarray(logits_of(batch["image"]))[keep])
        labels.append(np.asarray(batch["label"])[keep])
    return np.concatenate(outputs), np.concatenate(labels)


def metrics(logits: np.ndarray, labels: np.ndarray, num_classes: int) -> dict[str, Any]:
    """Top-1, top-5, mean cross-entropy, per-class accuracy and the confusion matrix [true,
    predicted]."""
    log_probs = np.asarray(jax.nn.log_softmax(jnp.asarray(logits), axis=-1))
    top5 = np.argsort(-logits, axis=-1)[:, : min(5, num_classes)]
    predicted = top5[:, 0]
    confusion = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    per_class = confusion.diagonal() / np.maximum(confusion.sum(axis=1), 1)
    return {
        "examples": int(len(labels)),
        "top1": float(np.mean(predicted == labels)),
        "top5": float(np.mean((top5 == labels[:, None]).any(axis=1))),
        "loss": float(-np.mean(log_probs[np.arange(len(labels)), labels])),
        "per_class_accuracy": [float(a) for a in per_class],
        "confusion": confusion.tolist(),
    }


def plot_confusion(
    confusion: np.ndarray, path: Path, title: str, class_names: list[str] | None = None
) -> None:
    """The confusion matrix as a PNG (row-normalised); skipped with a warning without matplotlib
    ([plots])."""
    try:
        import matplotlib
    except ImportError:
        logging.warning(
            "matplotlib is not installed: %s is not drawn (pip install -e .[plots])", path
        )
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(confusion)
    fig, ax = plt.subplots(figsize=(1.0 + 0.5 * n, 0.8 + 0.5 * n) if n <= 20 else (10, 9))
    rates = confusion / np.maximum(confusion.sum(axis=1, keepdims=True), 1)
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, label="fraction of the true class")
    names = class_names or [str(i) for i in range(n)]
    if n <= 20:
        ax.set_xticks(range(n), names, rotation=90)
        ax.set_yticks(range(n), names)
        for i in range(n):
            for j in range(n):
                if confusion[i, j]:
                    ax.text(
                        j,
                        i,
                        confusion[i, j],
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="white" if rates[i, j] > 0.5 else "black",
                    )
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    png = io.BytesIO()  # matplotlib writes local files only; the workdir may be gs://
    fig.savefig(png, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    epath.Path(path).write_bytes(png.getvalue())
