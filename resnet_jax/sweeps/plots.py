"""A sweep's plots, readable without the code: legend labels a person would say, a title with the
data set, the budget and the number of seeds, axis labels, one style per series, a min-max band
where a point has several seeds.

Pure: each function takes the points and what their runs logged and returns a matplotlib Figure;
results.py reads the files and saves the figures. Points that differ only in a seed (train.seed,
data.seed) are one series.
"""

from __future__ import annotations

import math
import os
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from resnet_jax.sweeps.grid import SEED_FIELDS

# What a reader calls each shortcut option (resnet_jax/nn/blocks.py): 'none' is the plain net of the
# degradation study, 'A' (identity, zero-padded where the shape changes) the paper's CIFAR ResNet.
SHORTCUT_NAMES = {"none": "plain", "A": "ResNet", "B": "ResNet", "C": "ResNet"}
SHORTCUT_NOTES = {"B": "projection shortcuts (B)", "C": "all-projection shortcuts (C)"}
FIELD_NAMES = {
    "model.zero_init_last": "zero-init",
    "model.stem_stride": "stem stride",
    "model.stem_pool": "stem max-pool",
    "model.stem_padding": "stem padding",
    "model.stage_strides": "stage strides",
    "model.width_multiplier": "width x",
    "model.drop_path_rate": "drop-path",
    "optim.lr": "lr",
    "train.seed": "seed",
    "data.seed": "data seed",
}
AXIS_LABELS = {
    "model.depth": "depth (layers with weights)",
    "model.width_multiplier": "width multiplier",
    "optim.lr": "peak learning rate",
}
DATASET_NAMES = {
    "cifar10": "CIFAR-10",
    "mnist5k": "MNIST-5k",
    "mnist": "MNIST",
    "fashion_mnist": "Fashion-MNIST",
    "shapes32": "shapes32 (synthetic)",
    "imagenet2012": "ImageNet",
}
LINE_STYLES = ("-", "--", ":", "-.")


def point_label(point: Mapping[str, Any]) -> str:
    """A legend label from a point's overrides: {'model.shortcut': 'A', 'model.depth': 56,
    'model.zero_init_last':
    True} -> 'ResNet-56, zero-init'; {'model.shortcut': 'none', 'model.depth': 20} -> 'plain-20'; {}
    -> 'baseline'. None (a field the point leaves at the config's value) is left out."""
    point = {k: v for k, v in point.items() if v is not None}
    shortcut, depth = point.pop("model.shortcut", None), point.pop("model.depth", None)
    parts = []
    if shortcut is not None:
        kind = SHORTCUT_NAMES.get(shortcut, f"shortcut {shortcut}")
        parts.append(f"{kind}-{depth}" if depth is not None else kind)
        if shortcut in SHORTCUT_NOTES:
            parts.append(SHORTCUT_NOTES[shortcut])
    elif depth is not None:
        parts.append(f"depth {depth}")
    for key, value in point.items():
        name = FIELD_NAMES.get(key, key.rsplit(".", 1)[-1])
        if isinstance(value, bool):
            parts.append(name if value else f"no {name}")
        elif key == "model.padding":
            parts.append(f"'{value}' padding")
        elif isinstance(value, (tuple, list)):
            parts.append(f"{name} {'/'.join(map(str, value))}")
        else:
            parts.append(f"{name} {value}")
    return ", ".join(parts) or "baseline"


def series_styles(n: int) -> list[dict[str, Any]]:
    """n distinct styles, no colour used twice: tab10 (solid) up to ten series; up to twenty,
    tab20's dark shades solid, then its light shades dashed and thicker; past twenty, a colour map
    sampled n times, line styles cycling."""
    import matplotlib

    if n <= 10:
        return [
            {"color": matplotlib.colormaps["tab10"](i), "linestyle": "-", "lw": 1.4}
            for i in range(n)
        ]
    if n <= 20:
        tab20 = matplotlib.colormaps["tab20"]
        return [
            {
                "color": tab20(2 * (i % 10) + i // 10),
                "linestyle": LINE_STYLES[i // 10],
                "lw": 1.4 + 0.6 * (i // 10),
            }
            for i in range(n)
        ]
    turbo = matplotlib.colormaps["turbo"]
    return [
        {"color": turbo(i / (n - 1)), "linestyle": LINE_STYLES[i % len(LINE_STYLES)], "lw": 1.4}
        for i in range(n)
    ]


def series(points: Sequence[Mapping[str, Any]]) -> dict[str, list[int]]:
    """{label: indices of the points}: points that differ only in their seeds share a label (one
    series)."""
    groups: dict[str, list[int]] = {}
    for i, point in enumerate(points):
        groups.setdefault(
            point_label({k: v for k, v in point.items() if k not in SEED_FIELDS}), []
        ).append(i)
    return groups


def describe_budget(
    configs: Sequence[Mapping[str, Any]], steps: Sequence[int], seeds: Sequence[int]
) -> str:
    """'CIFAR-10, 150 steps of batch 128 (peak lr 0.1), 1 seed per point' from the runs'
    config.json contents (empty where a run wrote none), their last steps and the number of seeds of
    each series."""

    def common(group: str, field: str):
        values = {c[group][field] for c in configs if field in c.get(group, {})}
        return values.pop() if len(values) == 1 else None

    name, path = common("data", "name"), common("data", "path")
    if name == "npz" and path:
        name = os.path.basename(path.rstrip("/")).removesuffix(".npz")
    parts = [DATASET_NAMES.get(name, name)] if name else []
    budget = f"{max(steps)} steps" if len(set(steps)) == 1 else f"{min(steps)}-{max(steps)} steps"
    batch, lr = common("data", "batch_size"), common("optim", "lr")
    budget += f" of batch {batch}" if batch else ""
    parts.append(budget + (f" (peak lr {lr:g})" if lr else ""))
    low, high = min(seeds), max(seeds)
    parts.append(
        f"{high} seed{'s' if high > 1 else ''} per point"
        if low == high
        else f"{low}-{high} seeds per point"
    )
    return ", ".join(parts)


def _log_tick(value: float, mantissas: Sequence[int]) -> str:
    """Plain numbers on a log axis (0.3, 2 rather than 3x10^-1, 2x10^0), at the given mantissas of
    each decade."""
    if value <= 0:
        return ""
    mantissa = round(value / 10 ** math.floor(math.log10(value)), 6)
    return f"{value:g}" if mantissa in mantissas else ""


def _spread(values: Sequence[float]) -> tuple[float, float, float]:
    return statistics.fmean(values), min(values), max(values)


def curves_figure(
    points: Sequence[Mapping[str, Any]],
    metrics: Sequence[Mapping[int, Mapping[str, float]]],
    budget: str,
    metric: str = "train/loss",
):
    """`metric` against step, one line per series (the mean over its seeds, a min-max band where it
    has several)."""
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    groups = series(points)
    fig, ax = plt.subplots(figsize=(9, 4.8))
    for (label, members), style in zip(groups.items(), series_styles(len(groups))):
        runs = [{s: r[metric] for s, r in metrics[i].items() if metric in r} for i in members]
        runs = [run for run in runs if run]
        if not runs:
            continue
        steps = sorted(set.intersection(*(set(run) for run in runs)))  # the steps every seed logged
        if not steps:
            continue
        mean, low, high = zip(*(_spread([run[s] for run in runs]) for s in steps))
        ax.plot(steps, mean, label=label, **style)
        if len(runs) > 1:
            ax.fill_between(steps, low, high, color=style["color"], alpha=0.2, lw=0)
    ax.set_xlabel("training step")
    ax.set_ylabel(
        "training loss (mean over each log window, log scale)" if metric == "train/loss" else metric
    )
    ax.set_yscale("log")
    bottom, top = ax.get_ylim()
    mantissas = (1, 2, 3, 5)
    if top / bottom < 10:  # under a decade, more ticks, each labelled
        mantissas = (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 7, 8)
        ax.yaxis.set_minor_locator(ticker.LogLocator(subs=mantissas))
    tick = ticker.FuncFormatter(lambda value, _: _log_tick(value, mantissas))
    ax.yaxis.set_major_formatter(tick)
    ax.yaxis.set_minor_formatter(tick)
    ax.grid(True, which="both", alpha=0.2)
    ax.set_title(f"Training loss per step\n{budget}", fontsize=10)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    fig.tight_layout()
    return fig


def versus_figure(axis: str, axes: Sequence[str], rows: Sequence[Mapping[str, Any]], budget: str):
    """Final training loss and eval accuracy against a numeric `axis`, one line per value of the
    other varying `axes` (the mean over seeds, a min-max band where there are several). `rows` are
    results.py's table rows."""
    import matplotlib.pyplot as plt

    groups = series([{k: row[k] for k in axes if k != axis} for row in rows])
    fig, panels = plt.subplots(1, 2, figsize=(11, 4.2))
    for (label, members), style in zip(groups.items(), series_styles(len(groups))):
        for panel, metric in zip(panels, ("train/loss", "eval/accuracy")):
            by_x: dict[Any, list[float]] = {}
            for i in members:
                if rows[i][metric] is not None:
                    by_x.setdefault(rows[i][axis], []).append(rows[i][metric])
            xs = sorted(by_x)
            if not xs:
                continue
            mean, low, high = zip(*(_spread(by_x[x]) for x in xs))
            panel.plot(xs, mean, marker="o", label=label, **style)
            if any(len(v) > 1 for v in by_x.values()):
                panel.fill_between(xs, low, high, color=style["color"], alpha=0.2, lw=0)
    for panel, ylabel in zip(
        panels, ("final training loss (last log window)", "final eval accuracy (held-out split)")
    ):
        panel.set_xlabel(AXIS_LABELS.get(axis, FIELD_NAMES.get(axis, axis)))
        panel.set_ylabel(ylabel)
        panel.set_xticks(sorted({row[axis] for row in rows}))
        panel.grid(True, alpha=0.3)
    panels[1].set_ylim(0, 1)
    fig.suptitle(
        f"Final metrics against {AXIS_LABELS.get(axis, axis).split(' (')[0]}\n{budget}", fontsize=10
    )
    panels[1].legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False)
    fig.tight_layout()
    return fig


def accuracy_figure(groups: Sequence[Mapping[str, Any]], budget: str):
    """Final eval accuracy per point: each seed a dot, the mean a bar with its 95% interval, the
    baseline's mean a dashed line, and the point's MACs in its label. `groups` are
    results.group_table's rows."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 0.55 * len(groups) + 1.6))
    rows = range(len(groups))[::-1]  # the baseline on top
    for y, group in zip(rows, groups):
        ax.barh(
            y,
            group["accuracy %"],
            color="tab:blue" if y == rows[0] else "tab:gray",
            alpha=0.35,
            height=0.6,
        )
        ax.scatter(
            group["seeds %"],
            [y] * len(group["seeds %"]),
            color="black",
            s=12,
            zorder=3,
            label="one seed" if y == rows[0] else None,
        )
        if group["95% interval"] is not None:
            low, high = group["95% interval"]
            ax.errorbar(
                group["accuracy %"],
                y,
                xerr=[[group["accuracy %"] - low], [high - group["accuracy %"]]],
                color="tab:red",
                capsize=4,
                lw=1.5,
                zorder=4,
                label="95% interval" if y == rows[0] else None,
            )
    ax.axvline(
        groups[0]["accuracy %"], color="tab:blue", linestyle="--", lw=1, label="baseline mean"
    )
    macs = [
        f"{g['point']}\n{g['GMACs'] * 1000:.0f} MMACs" if g["GMACs"] else g["point"] for g in groups
    ]
    ax.set_yticks(list(rows), macs, fontsize=8)
    values = [v for g in groups for v in g["seeds %"]]
    ax.set_xlim(max(0.0, min(values) - 5), min(100.0, max(values) + 3))
    ax.set_xlabel("final accuracy on the eval split (%)")
    ax.grid(True, axis="x", alpha=0.3)
    ax.set_title(f"Final accuracy per point\n{budget}", fontsize=10)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    fig.tight_layout()
    return fig
