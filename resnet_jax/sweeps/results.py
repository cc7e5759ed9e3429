"""Collect a sweep's finished points into a table (Markdown, CSV) and plots (PNG).

Reads each point's `metrics.jsonl` (the last row written for a step wins, so a resumed run counts
once) and `model_summary.json` (parameters and MACs, written by the entry point). Writes, in the
sweep
directory:
results.md, results.csv, curves.png (training loss per point) and, when a numeric axis varies, one
plot of final metrics against it (plots.py draws them). The sweep directory may be local or gs://
(etils.epath): each file is written whole.
"""

from __future__ import annotations

import csv
import io
import json
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from absl import logging
from etils import epath

from resnet_jax.sweeps import plots, stats
from resnet_jax.sweeps.grid import SEED_FIELDS, STATUS_FILE, format_value, point_name

METRICS = ("train/loss", "train/accuracy", "eval/loss", "eval/accuracy")


def read_metrics(path: epath.Path) -> dict[int, dict[str, float]]:
    """{step: {name: value}} from a metrics.jsonl; later rows for the same step replace earlier
    ones."""
    rows: dict[int, dict[str, float]] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                rows.setdefault(int(row["step"]), {}).update(row)
    return dict(sorted(rows.items()))


def final(rows: Mapping[int, Mapping[str, float]], name: str) -> float | None:
    """The value of `name` at the last step that logged it."""
    values = [row[name] for row in rows.values() if name in row]
    return values[-1] if values else None


def summarise_point(
    directory: epath.Path, point: Mapping[str, Any], keys: Sequence[str]
) -> dict[str, Any]:
    """One table row: the point's settings (None where it keeps the config's), final metrics, size,
    speed."""
    rows = read_metrics(directory / "metrics.jsonl")
    summary_file = directory / "model_summary.json"
    model = json.loads(summary_file.read_text()) if summary_file.exists() else {}
    speeds = [
        row["train/images_per_second"] for row in rows.values() if "train/images_per_second" in row
    ]
    train = read_config(directory).get("train", {})
    target = train.get("stop_after") or train.get("steps")
    last = max(rows) if rows else 0
    result = {
        "point": directory.name,
        **{k: point.get(k) for k in keys},
        "steps": last,
        # reached its last step (a run without a config.json: whatever it logged)
        "finished": target is None or last >= target,
    }
    result.update({name: final(rows, name) for name in METRICS})
    result["params"] = model.get("params")
    result["GMACs"] = model["macs"] / 1e9 if "macs" in model else None
    # first includes compile
    result["images/s"] = statistics.median(speeds[1:] or speeds) if speeds else None
    status_file = directory / STATUS_FILE
    seconds = json.loads(status_file.read_text()).get("seconds") if status_file.exists() else None
    # the run's command(s), start to end
    result["wall min"] = seconds / 60 if seconds is not None else None
    return result


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, (tuple, list)) and all(isinstance(v, float) for v in value):
        return f"[{value[0]:.2f}, {value[1]:.2f}]"  # an interval
    if isinstance(value, (tuple, list)):
        return "/".join(map(str, value))  # stage strides
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int) and value >= 10_000:
        return f"{value:,}"
    return str(value)


def collect(
    workdir: epath.Path,
    points: Sequence[Mapping[str, Any]],
    *,
    out: epath.Path | None = None,
    command: str | None = None,
) -> list[dict[str, Any]]:
    """Write results.{md,csv,json} and plots for the points that have metrics into `out` (default:
    the sweep directory); returns the table rows, one per run. Where points have seeds, the table of
    groups comes first: per point n, mean, std and 95% interval of the final eval accuracy, its
    difference to the first point (the baseline) with Welch's interval, and the cost; `command` (the
    sweep's) is recorded with them."""
    out = workdir if out is None else out
    keys = list(dict.fromkeys(k for p in points for k in p))  # every axis, in order of appearance
    table = [summarise_point(workdir / point_name(p), p, keys) for p in points]
    table = [row for row in table if row["steps"]]
    if not table:
        print(f"No finished points under {workdir} yet.")
        return []
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.csv").write_text(_csv(table))
    fixed = {
        k: points[0].get(k)
        for k in keys
        if all(str(p.get(k)) == str(points[0].get(k)) for p in points)
    }
    lines = [f"Command: `{command}`", ""] if command else []
    lines += (
        [f"Fixed: {', '.join(f'`{k}={format_value(v)}`' for k, v in fixed.items())}", ""]
        if fixed
        else []
    )
    seeded = any(k in SEED_FIELDS for k in keys)
    groups = group_table(table, [k for k in keys if k not in SEED_FIELDS]) if seeded else []
    if groups:
        (out / "groups.csv").write_text(_csv(groups))
        lines += [
            f"Final eval accuracy per point over its seeds: mean, std, the {stats.CONFIDENCE:.0%} "
            "interval "
            "(Student t), and the difference to the baseline with Welch's interval; * where that "
            "interval "
            f"excludes 0.",
            "",
        ]
        lines += _markdown(
            groups, [h for h in groups[0] if h not in ("significant", "p", "directory", "seeds %")]
        )
        lines += ["", "Runs:", ""]
    # the Markdown table shows what varies
    hidden = {"point"} | ({"finished"} if all(row["finished"] for row in table) else set())
    header = [k for k in table[0] if k not in fixed and k not in hidden]
    lines += _markdown(table, header)
    (out / "results.md").write_text("\n".join(lines) + "\n")
    (out / "results.json").write_text(
        json.dumps({"command": command, "groups": groups, "runs": table}, indent=1)
    )
    print("\n".join(lines))
    finished = [row for row in table if row["finished"]]
    if finished:
        plot(workdir, points, finished, out, groups)
    return table


def group_table(table: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> list[dict[str, Any]]:
    """One row per point over its seeds (the first point is the baseline); `table` has
    summarise_point's rows."""
    members: dict[str, list[Mapping[str, Any]]] = {}
    for row in (row for row in table if row["finished"]):  # a run still training is no sample
        members.setdefault(point_name({k: row[k] for k in keys if row[k] is not None}), []).append(
            row
        )

    def accuracies(rows):
        return [row["eval/accuracy"] for row in rows if row["eval/accuracy"] is not None]

    baseline = accuracies(next(iter(members.values())))
    groups = []
    for name, rows in members.items():
        values = accuracies(rows)
        if not values:
            continue
        seeds, diff = stats.sample(values), stats.difference(values, baseline)
        interval = (100 * seeds.low, 100 * seeds.high) if seeds.low is not None else None
        diff_interval = (100 * diff.low, 100 * diff.high) if diff.low is not None else None
        groups.append(
            {
                "point": plots.point_label({k: rows[0][k] for k in keys}),
                "n": seeds.n,
                "accuracy %": 100 * seeds.mean,
                "std": None if seeds.std is None else 100 * seeds.std,
                "95% interval": interval,
                "vs baseline": 100 * diff.delta,
                "95% interval of difference": diff_interval,
                "significant": diff.significant,
                "p": diff.p_value,
                "": "*" if diff.significant else "",
                "params": rows[0]["params"],
                "GMACs": rows[0]["GMACs"],
                "images/s": _mean([row["images/s"] for row in rows]),
                "wall min": _mean([row["wall min"] for row in rows]),
                "directory": name,
                "seeds %": [100 * v for v in values],
            }
        )
    return groups


def _mean(values: Sequence[float | None]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.fmean(values) if values else None


def _csv(rows: Sequence[Mapping[str, Any]]) -> str:
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return text.getvalue()


def _markdown(rows: Sequence[Mapping[str, Any]], header: Sequence[str]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(_cell(row[h]) for h in header) + " |" for row in rows]


def plot(
    workdir: epath.Path,
    points: Sequence[Mapping[str, Any]],
    table: Sequence[Mapping[str, Any]],
    out: epath.Path,
    groups: Sequence[Mapping[str, Any]] = (),
) -> None:
    """curves.png: training loss against step for every point; vs_AXIS.png for a numeric varying
    axis; accuracy.png, each point's seeds and interval, where points have seeds (`groups`:
    group_table's). Labels, title (data set, budget, seeds) and styles are plots.py's; the budget is
    read from each run's config.json. Without matplotlib (the [plots] extra) the tables stand alone,
    and one warning says so."""
    try:
        import matplotlib
    except ImportError:
        logging.warning(
            "matplotlib is not installed: the plots of %s are not drawn (pip install -e .[plots])",
            workdir,
        )
        return
    matplotlib.use("Agg")

    done = {row["point"] for row in table}
    # the points with metrics, in the sweep's order
    points = [p for p in points if point_name(p) in done]
    configs = [read_config(workdir / point_name(p)) for p in points]
    budget = plots.describe_budget(
        configs,
        [row["steps"] for row in table],
        [len(members) for members in plots.series(points).values()],
    )
    metrics = [read_metrics(workdir / point_name(p) / "metrics.jsonl") for p in points]
    save_figure(plots.curves_figure(points, metrics, budget), out / "curves.png")
    if groups:
        save_figure(plots.accuracy_figure(groups, budget), out / "accuracy.png")

    axes = list(
        dict.fromkeys(k for p in points for k in p if len({str(q.get(k)) for q in points}) > 1)
    )
    numeric = [
        k
        for k in axes
        if k not in SEED_FIELDS
        and all(
            isinstance(p.get(k), (int, float)) and not isinstance(p.get(k), bool) for p in points
        )
    ]
    for axis in numeric:
        save_figure(
            plots.versus_figure(axis, axes, table, budget), out / f"vs_{axis.replace('.', '_')}.png"
        )


def read_config(directory: epath.Path) -> dict[str, Any]:
    """The run's config.json (written by the entry point), or {} where there is none."""
    path = directory / "config.json"
    return json.loads(path.read_text()) if path.exists() else {}


def save_figure(fig, path: epath.Path) -> None:
    """A PNG of `fig` at `path`, local or in a bucket (matplotlib itself writes only local
    files)."""
    import matplotlib.pyplot as plt

    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=120, bbox_inches="tight")  # keeps a legend outside the axes
    plt.close(fig)
    path.write_bytes(png.getvalue())
