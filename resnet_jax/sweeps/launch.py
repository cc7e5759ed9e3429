"""A sweep on this machine: its points one after another, finished ones skipped (the cloud:
skypilot.py)."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from resnet_jax.sweeps.grid import STATUS_FILE, point_command, point_name


def run_local(
    config: str, points: Sequence[dict], workdir: Path, common: Mapping[str, Any] | None = None
) -> list[Path]:
    """Train each point in turn; skip finished ones. Returns the point directories.

    `common` overrides go to every run (a budget, say) without appearing in the point names.
    """
    directories = []
    for i, point in enumerate(points):
        directory = workdir / point_name(point)
        directories.append(directory)
        status_file = directory / STATUS_FILE
        status = json.loads(status_file.read_text()) if status_file.exists() else {}
        if status.get("status") == "done":
            print(f"[{i + 1}/{len(points)}] {directory.name}: done, skipped", flush=True)
            continue
        directory.mkdir(parents=True, exist_ok=True)
        command = point_command(config, str(directory), {**(common or {}), **point}, sys.executable)
        print(f"[{i + 1}/{len(points)}] {directory.name}: {shlex.join(command)}", flush=True)
        start = time.monotonic()
        result = subprocess.run(command)
        # Wall seconds of every attempt that returned, so a resumed point reports its whole cost.
        seconds = status.get("seconds", 0.0) + time.monotonic() - start
        done = result.returncode == 0
        status_file.write_text(
            json.dumps(
                {
                    "status": "done" if done else "failed",
                    "point": point,
                    "seconds": round(seconds, 1),
                }
            )
        )
        if not done:
            raise SystemExit(
                f"Point {directory.name} failed (exit {result.returncode}); fix it and run the "
                "same "
                f"command again: finished points are skipped, this one resumes."
            )
    return directories
