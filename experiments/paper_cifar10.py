r"""The ResNet paper's CIFAR-10 numbers from finished runs: a JSON record per run, a table beside
the paper's, curves.

    python -m experiments.paper_cifar10
    --runs=~/runs/c10_resnet20_fast_s0,~/runs/c10_resnet20_fast_s1
    python -m experiments.paper_cifar10 --runs=~/runs/c10_resnet20_paper_s0
    --name=paper_cifar10_schedule
    python -m experiments.paper_cifar10 --runs=~/runs/c10_resnet20_fast_nolevers_s0
    --name=paper_cifar10_levers \
        --baseline=paper_cifar10

Each run is a workdir that `python -m resnet_jax.main` finished (its command is read from run.json).
For each, its last checkpoint is evaluated on the whole test split four ways: the raw and the EMA
weights, each with and without flip test-time augmentation (the mean of the logits of the image and
its mirror). Writes experiments/results/NAME.{json,md} and NAME_curves.png (train and test error per
step), NAME paper_cifar10 unless --name says otherwise: a study of other runs gets its own files
beside the headline's. Runs are grouped as seeds of one recipe by their config and its `--config.`
overrides (seeds, evaluation, saving and data paths aside), so an ablation gets a row of its own;
--baseline=NAME puts NAME.json's rows above, for comparison.
"""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path

import numpy as np
from absl import flags

from experiments.results_io import RESULTS, plot_path
from resnet_jax import data, errors, restore, runtime
from resnet_jax.cpu.machine import cpu_description
from resnet_jax.nn.trace import totals, trace
from resnet_jax.sweeps.results import read_metrics
from resnet_jax.training import evaluation

# He et al. 2015, Table 6: CIFAR-10 test error (%), option A shortcuts, ~164 epochs.
PAPER_ERROR = {20: 8.75, 32: 7.51, 44: 7.17, 56: 6.97, 110: 6.43}
TRAIN_IMAGES = 50_000

flags.DEFINE_list("runs", [], "Finished workdirs of resnet_jax.main on CIFAR-10.")
flags.DEFINE_string(
    "name",
    "paper_cifar10",
    "The results' name: experiments/results/NAME.{json,md}, NAME_curves.png.",
)
flags.DEFINE_string(
    "baseline",
    "",
    "Results to compare against: the records of experiments/results/BASELINE.json "
    "(an earlier NAME) join the tables, marked, above these runs; the curves are these runs' only.",
)
FLAGS = flags.FLAGS


def test_accuracy(model, variables, dataset, *, flip: bool) -> float:
    """Top-1 accuracy over every test image once (the prediction of resnet_jax.evaluate)."""
    logits, labels = evaluation.predict(
        model, variables, data.eval_batches(dataset, batch_size=1000), flip=flip
    )
    assert len(labels) == dataset.info.num_eval
    return evaluation.metrics(logits, labels, dataset.info.num_classes)["top1"]


def record(workdir: Path) -> dict:
    config, dataset, model, state = restore.restore_run(workdir)
    rows = read_metrics(workdir / "metrics.jsonl")
    steps = max(rows)
    variants = {"raw": evaluation.variables_of(state, raw=True)}
    if state.ema is not None:
        variants["ema"] = evaluation.variables_of(state, raw=False)
    accuracy = {
        f"{name}{'_flip' if flip else ''}": test_accuracy(model, v, dataset, flip=flip)
        for name, v in variants.items()
        for flip in (False, True)
    }
    steps_per_epoch = TRAIN_IMAGES // config.data.batch_size
    last_epoch = [
        rows[s]["train/accuracy"]
        for s in sorted(rows)
        if "train/accuracy" in rows[s] and s > steps - steps_per_epoch
    ]
    run_info = json.loads((workdir / "run.json").read_text())
    command = "python -m resnet_jax.main " + " ".join(
        shlex.quote(a) for a in run_info["command"][1:]
    )
    params, _ = totals(trace(model, (1, *dataset.info.image_shape)))
    kind = "plain" if config.model.shortcut == "none" else "resnet"
    headline = accuracy.get("ema", accuracy["raw"])  # what the run itself evaluated every epoch
    config_name, overrides = _recipe(run_info["command"])
    return {
        # Runs of one label are seeds of one recipe: an override of the recipe is part of the label.
        "model": f"{kind}{config.model.depth}",
        "params": params,
        "config": " ".join([config_name, *overrides]),
        "overrides": overrides,
        "seed": config.train.seed,
        "epochs": round(steps / steps_per_epoch, 2),
        "steps": steps,
        "test_accuracy": headline,
        "test_accuracy_all": accuracy,
        # Train error over the last epoch's logged rows (augmented batches, the weights as they
        # trained).
        "final_train_error": 1 - float(np.mean(last_epoch)),
        "wall_minutes": round(_wall_seconds(workdir) / 60, 1),
        "git_revision": run_info.get("git_revision"),
        "command": command,
    }


# Overrides that do not change what a run learns: seeds (a column of their own), when it evaluates,
# saves, logs or pauses, and where its data lies. Any other `--config.X=Y` is part of the recipe and
# of its label.
RUN_CONTROL = {
    "train.seed",
    "data.seed",
    "train.stop_after",
    "train.eval_every",
    "train.checkpoint_every",
    "train.log_every",
    "train.keep_checkpoints",
    "data.path",
    "data.data_dir",
}


def _recipe(argv: list[str]) -> tuple[str, list[str]]:
    """The config file and arg, and the overrides that change the recipe ('optim.ema=0.0'), as
    given."""
    name = next(a.split("=", 1)[1] for a in argv if a.startswith("--config="))
    overrides = [a[len("--config.") :] for a in argv if a.startswith("--config.")]
    return name, [o for o in overrides if o.split("=", 1)[0] not in RUN_CONTROL]


def _wall_seconds(workdir: Path) -> float:
    """Time the run spent running: from each start (the Unix time in the name of the TensorBoard
    event file it opened) to its last metrics row before the next start, summed, so a run paused
    between sessions does not count the pause."""
    starts = sorted(int(p.name.split(".")[3]) for p in workdir.glob("events.out.tfevents.*"))
    with open(workdir / "metrics.jsonl") as f:
        times = sorted(row["time"] for row in map(json.loads, f) if "time" in row)
    if not times:  # rows without times: the metrics file's last change
        return (workdir / "metrics.jsonl").stat().st_mtime - starts[0]
    total = 0.0
    for start, following in zip(starts, [*starts[1:], float("inf")]):
        segment = [t for t in times if start <= t < following]
        total += segment[-1] - start if segment else 0.0
    return total


def write(
    records: list[dict],
    command: str,
    name: str = "paper_cifar10",
    *,
    baseline: list[dict] = (),
    baseline_name: str = "",
) -> None:
    """NAME.json (these runs' records) and NAME.md: a row per run, below the baseline's rows when
    given (their config marked with *), then the means over seeds and the degradation claims over
    both."""
    (RESULTS / f"{name}.json").write_text(json.dumps(records, indent=2) + "\n")
    lines = [
        f"<!-- made by: {command} -->",
        f"Command: `{command}`",
        "",
        "CIFAR-10, full 10,000-image test split, each run's last checkpoint. `test acc` is the "
        "weights the "
        "run evaluated (EMA when the recipe keeps one); raw and flip-TTA columns beside it. Wall "
        "time on "
        f"the machine that made this table ({cpu_description()}), oneDNN float32 convolutions, "
        "with other "
        "work (tests) sharing the cores part of the time.",
    ]
    if baseline:
        lines.append(
            f"Rows marked * are the records of {baseline_name}.json (evaluated then, on the "
            "machine "
            f"{baseline_name}.md names), for comparison."
        )
    lines += [
        "",
        "| model | params | config | seed | epochs | test acc | test error | paper error | raw | "
        "raw+flip | "
        "EMA | EMA+flip | final train error | wall min |",
        "|" + "---|" * 14,
    ]
    marked = [{**r, "config": f"{r['config']}*"} for r in baseline]
    records = marked + list(records)
    for r in records:
        a = r["test_accuracy_all"]
        depth = int(r["model"].removeprefix("resnet").removeprefix("plain"))
        paper = (
            f"{PAPER_ERROR[depth]:.2f}%"
            if r["model"].startswith("resnet") and depth in PAPER_ERROR
            else "-"
        )
        cell = lambda k: f"{100 * a[k]:.2f}%" if k in a else "-"  # noqa: E731
        lines.append(
            f"| {r['model']} | {r['params']:,} | `{r['config']}` | {r['seed']} | {r['epochs']:g} | "
            f"{100 * r['test_accuracy']:.2f}% | {100 * (1 - r['test_accuracy']):.2f}% | {paper} | "
            f"{cell('raw')} | {cell('raw_flip')} | {cell('ema')} | {cell('ema_flip')} | "
            f"{100 * r['final_train_error']:.1f}% | {r['wall_minutes']} |"
        )
    groups: dict[tuple, list[float]] = {}
    for r in records:
        groups.setdefault((r["model"], r["config"]), []).append(r["test_accuracy"])
    lines += [
        "",
        "Mean and spread over seeds:",
        "",
        "| model | config | seeds | mean test acc | min - max |",
        "|---|---|---|---|---|",
    ]
    for (model, config), accs in groups.items():
        lines.append(
            f"| {model} | `{config}` | {len(accs)} | {100 * np.mean(accs):.2f}% | "
            f"{100 * min(accs):.2f}% - {100 * max(accs):.2f}% |"
        )
    lines += ["", *degradation(records), "", f"![curves]({name}_curves.png)", ""]
    (RESULTS / f"{name}.md").write_text("\n".join(lines))


def degradation(records: list[dict]) -> list[str]:
    """The paper's Fig. 6 claims from the runs' seed means: (a) plain-56 trains to a higher error
    than plain-20 (depth degrades a plain net), (b) ResNet-56 to at most ResNet-20's (residual nets
    do not degrade)."""
    # an ablation is not a seed of its model's recipe
    records = [r for r in records if not r.get("overrides")]
    means: dict[str, dict[str, float]] = {}
    for model in dict.fromkeys(r["model"] for r in records):
        runs = [r for r in records if r["model"] == model]
        means[model] = {
            "train": 100 * float(np.mean([r["final_train_error"] for r in runs])),
            "test": 100 * (1 - float(np.mean([r["test_accuracy"] for r in runs]))),
            "seeds": len(runs),
        }
    lines = [
        "Degradation (the paper's Fig. 6): final train error (the last epoch's augmented batches) "
        "and test "
        "error, mean over seeds:",
        "",
        "| model | seeds | final train error | test error |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {m} | {v['seeds']} | {v['train']:.2f}% | {v['test']:.2f}% |" for m, v in means.items()
    ]
    lines.append("")
    for label, shallow, deep, degrades in (
        ("(a) plain-56 trains worse than plain-20", "plain20", "plain56", True),
        ("(b) ResNet-56 trains at least as well as ResNet-20", "resnet20", "resnet56", False),
    ):
        if shallow not in means or deep not in means:
            lines.append(
                f"- {label}: not measured (no {deep if shallow in means else shallow} run given)."
            )
            continue
        a, b = means[shallow]["train"], means[deep]["train"]
        holds = b > a if degrades else b <= a
        lines.append(
            f"- {label}: {'holds' if holds else 'does not hold'} ({shallow} {a:.2f}%, {deep} "
            f"{b:.2f}% "
            "train error)."
        )
    return lines


def plot(workdirs: list[Path], records: list[dict], name: str = "paper_cifar10") -> None:
    """Train and test error against iteration, one colour per (model, config): the mean over its
    seeds, a min-max band where it has several, train error thin, test error dashed. Plain and
    residual nets side by side when both were given, as in the paper's Fig. 6 (left: plain, middle:
    ResNet)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups: dict[tuple, list[dict]] = {}
    for workdir, r in zip(workdirs, records):
        rows = read_metrics(workdir / "metrics.jsonl")
        groups.setdefault((r["model"], r["config"]), []).append(rows)
    # False: plain, True: ResNet
    kinds = sorted({model.startswith("resnet") for model, _ in groups})
    fig, axes = plt.subplots(
        1, len(kinds), figsize=(7 * len(kinds) + 3, 5), sharey=True, squeeze=False
    )
    panel = {kind: ax for kind, ax in zip(kinds, axes[0])}
    several_configs = len({c for _, c in groups}) > 1
    highest = 40.0  # the y-axis shows 0-40% unless a curve is higher after the first evaluation
    for i, ((model, config), runs) in enumerate(groups.items()):
        ax = panel[model.startswith("resnet")]
        kind = "ResNet" if model.startswith("resnet") else "plain"
        label = f"{kind}-{model.removeprefix('resnet').removeprefix('plain')}"
        if several_configs:
            label += f" ({config.split(':')[-1]})"
        first_eval = min(s for rows in runs for s, row in rows.items() if "eval/accuracy" in row)
        for metric, what, style in (
            ("train/accuracy", "train", dict(lw=0.8, alpha=0.8)),
            ("eval/accuracy", "test", dict(lw=1.6, ls="--")),
        ):
            steps = sorted(
                set.intersection(
                    *({s for s, row in rows.items() if metric in row} for rows in runs)
                )
            )
            # [seeds, steps]
            error_pct = np.array([[100 * (1 - rows[s][metric]) for s in steps] for rows in runs])
            ax.plot(
                steps, error_pct.mean(0), color=f"C{i}", label=f"{label}, {what} error", **style
            )
            highest = max(highest, *error_pct.mean(0)[np.asarray(steps) >= first_eval])
            if len(runs) > 1:
                ax.fill_between(
                    steps, error_pct.min(0), error_pct.max(0), color=f"C{i}", alpha=0.2, lw=0
                )
    for kind, ax in panel.items():
        ax.axhline(
            PAPER_ERROR[20],
            color="grey",
            lw=0.8,
            ls=":",
            label="paper's ResNet-20 test error (8.75%)",
        )
        ax.set_ylim(0, min(100, 10 * np.ceil(highest / 10)))
        ax.set_xlabel("training iteration (batch 128)")
        ax.grid(True, alpha=0.3)
        ax.set_title("ResNet (option A shortcuts)" if kind else "plain (no shortcuts)", fontsize=10)
        ax.legend(loc="upper right", fontsize=8, frameon=False)
    axes[0][0].set_ylabel("top-1 error (%): train on augmented batches, test on 10,000 images")
    seeds = sorted({len(runs) for runs in groups.values()})
    spread = "mean and min-max band over " if max(seeds) > 1 else ""
    fig.suptitle(
        f"CIFAR-10, {', '.join(sorted({r['config'] for r in records}))}, {records[0]['epochs']:g} "
        f"epochs; {spread}{'-'.join(map(str, seeds))} seed{'s' if max(seeds) > 1 else ''} "
        "per model",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(plot_path(f"{name}_curves"), dpi=120, bbox_inches="tight")


def main(argv) -> None:
    del argv
    runtime.setup()
    if not FLAGS.runs:
        raise errors.UserError(
            "--runs is empty: give finished workdirs of resnet_jax.main, comma-separated"
        )
    workdirs = [Path(os.path.expanduser(r)) for r in FLAGS.runs]
    records = [record(w) for w in workdirs]
    command = "python -m experiments.paper_cifar10 --runs=" + ",".join(FLAGS.runs)
    if FLAGS.name != "paper_cifar10":
        command += f" --name={FLAGS.name}"
    baseline = []
    if FLAGS.baseline:
        command += f" --baseline={FLAGS.baseline}"
        path = RESULTS / f"{FLAGS.baseline}.json"
        if not path.is_file():
            raise errors.UserError(
                f"--baseline={FLAGS.baseline}: {path} does not exist; name an earlier --name's "
                f"results, e.g. --baseline=paper_cifar10"
            )
        baseline = json.loads(path.read_text())
    write(records, command, FLAGS.name, baseline=baseline, baseline_name=FLAGS.baseline)
    plot(workdirs, records, FLAGS.name)
    for r in records:
        print(
            json.dumps(
                {k: r[k] for k in ("model", "seed", "epochs", "test_accuracy", "test_accuracy_all")}
            )
        )


if __name__ == "__main__":
    errors.run_absl(main)
