"""Writing an experiment's results under results/: a table as Markdown and CSV, a sweep's table and
plots, the path of a plot."""

from __future__ import annotations

import csv
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def write_table(
    name: str, header: Sequence[str], rows: Sequence[Sequence], *, command: str, notes: str = ""
) -> Path:
    """results/NAME.md (with the command that made it) and results/NAME.csv; returns the .md
    path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    with open(RESULTS / f"{name}.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    lines = [f"<!-- made by: {command} -->", f"Command: `{command}`", ""]
    if notes:
        lines += [notes, ""]
    lines += ["| " + " | ".join(map(str, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in rows]
    path = RESULTS / f"{name}.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def plot_path(name: str) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    return RESULTS / f"{name}.png"


def publish(workdir: Path, name: str) -> None:
    """Copy a sweep's table and plots from workdir into results/NAME/; the table starts with this
    command."""
    target = RESULTS / name
    target.mkdir(parents=True, exist_ok=True)
    module = Path(sys.argv[0]).stem
    command = " ".join(["python -m experiments." + module, *sys.argv[1:]])
    table = (workdir / "results.md").read_text()
    (target / "results.md").write_text(f"Command: `{command}`\n\n{table}")
    shutil.copy(workdir / "results.csv", target)
    for path in workdir.glob("*.png"):
        shutil.copy(path, target)
    print(f"results in {target}")
