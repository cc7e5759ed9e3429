"""Where a sweep's points train: one after another on this machine, or queued on cloud TPU VMs."""
from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from resnet_jax.sweeps.grid import STATUS_FILE, point_command, point_name


def run_local(config: str, points: Sequence[dict], workdir: Path,
              common: Mapping[str, Any] | None = None) -> list[Path]:
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
        status_file.write_text(json.dumps({"status": "done" if done else "failed", "point": point,
                                           "seconds": round(seconds, 1)}))
        if not done:
            raise SystemExit(f"Point {directory.name} failed (exit {result.returncode}); fix it and run the same "
                             f"command again: finished points are skipped, this one resumes.")
    return directories


def tpu_commands(config: str, points: Sequence[dict], workdir: str, tpus: Sequence[str], zone: str,
                 repo_dir: str = "~/resnet_jax") -> list[list[str]]:
    """gcloud commands that run the points on TPU VMs: point i goes to tpus[i % len(tpus)], in a queue.

    Each TPU gets one `gcloud compute tpus tpu-vm ssh` whose command runs its points one after another on
    all workers (multi-host TPU slices run one process per host; jax.distributed finds its peers there).
    """
    if not tpus:
        raise ValueError("Give at least one TPU VM name (--tpus=NAME[,NAME...]).")
    queues: dict[str, list[str]] = {tpu: [] for tpu in tpus}
    for i, point in enumerate(points):
        run = point_command(config, f"{workdir.rstrip('/')}/{point_name(point)}", point, "python3")
        queues[tpus[i % len(tpus)]].append(shlex.join(run))
    return [["gcloud", "compute", "tpus", "tpu-vm", "ssh", tpu, f"--zone={zone}", "--worker=all",
             f"--command=cd {repo_dir} && " + " && ".join(runs)] for tpu, runs in queues.items() if runs]
