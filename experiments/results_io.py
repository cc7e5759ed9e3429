"""Writing an experiment's results: a table as Markdown and CSV, and the path of its plot, under results/."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Sequence

RESULTS = Path(__file__).resolve().parent / "results"


def write_table(name: str, header: Sequence[str], rows: Sequence[Sequence], *, command: str,
                notes: str = "") -> Path:
    """results/NAME.md (with the command that made it) and results/NAME.csv; returns the .md path."""
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
