"""What a run reports: TensorBoard events, `metrics.jsonl`, and a progress line with speed and ETA.

One JSON object per line, `{"step": 100, "time": ..., "train/loss": ..., "train/accuracy": ...}`, so
a notebook reads a run with `pandas.read_json(path, lines=True)`. Only process 0 writes.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from absl import logging
from etils import epath

from resnet_jax.training import paths

JSONL = "metrics.jsonl"


class MetricWriter:
    """Scalars to TensorBoard (tensorboardX) and to workdir/metrics.jsonl; a no-op when not enabled.

    A run resumed at `start_step` first drops what a killed run wrote after that step (the steps it
    will redo): rows of metrics.jsonl, a half-written last line, and, through `purge_step`,
    TensorBoard's later events. Object stores (gs://) have no append: there the files are written in
    a local staging folder and each write uploads them whole, which replaces the object atomically.
    Without tensorboardX (GPU images often lack it) the run writes metrics.jsonl only, and says so
    once.
    """

    def __init__(
        self,
        workdir: str | epath.Path,
        *,
        start_step: int = 0,
        enabled: bool = True,
        hparams: Mapping[str, Any] | None = None,
    ):
        self.enabled = enabled
        if not enabled:
            return
        self._workdir = paths.run_path(workdir)
        self._remote = paths.is_remote(self._workdir)
        self._local = (
            Path(tempfile.mkdtemp(prefix="resnet_jax_metrics."))
            if self._remote
            else Path(self._workdir)
        )
        self._local.mkdir(parents=True, exist_ok=True)
        if self._remote and (self._workdir / JSONL).exists():
            (self._local / JSONL).write_bytes((self._workdir / JSONL).read_bytes())
        _truncate_after(self._local / JSONL, start_step)
        self._tb = _summary_writer(self._local, start_step)
        if self._tb is not None and hparams:
            _write_hparams(self._tb, hparams, start_step)
        self._jsonl = open(self._local / JSONL, "a")
        self._sync()

    def write(self, step: int, scalars: Mapping[str, float]) -> None:
        if not self.enabled:
            return
        if self._tb is not None:
            for name, value in scalars.items():
                self._tb.add_scalar(name, value, global_step=step)
        row = {"step": step, "time": time.time(), **{k: float(v) for k, v in scalars.items()}}
        self._jsonl.write(json.dumps(row) + "\n")
        self._jsonl.flush()
        self._sync()

    def _sync(self) -> None:
        """Upload metrics.jsonl and this process's event file to a remote workdir (a no-op for a
        local one)."""
        if not self._remote:
            return
        if self._tb is not None:
            self._tb.flush()
        for local in [self._local / JSONL, *sorted(self._local.glob("events.out.tfevents.*"))]:
            try:
                (self._workdir / local.name).write_bytes(local.read_bytes())
            # a failed write must stop the run, in one line
            except Exception as error:
                raise paths.WorkdirUnusable(
                    f"{self._workdir / local.name}: could not be written "
                    f"({paths.describe_storage_error(self._workdir, error)})"
                ) from None

    def close(self) -> None:
        if self.enabled:
            if self._tb is not None:
                self._tb.close()
            self._jsonl.close()
            self._sync()
            if self._remote:
                shutil.rmtree(self._local, ignore_errors=True)


def _summary_writer(logdir: Path, start_step: int):
    """tensorboardX's SummaryWriter, or None (with one warning) where tensorboardX is not
    installed."""
    try:
        from tensorboardX import SummaryWriter  # imported here: writing is process 0's job only
    except ImportError:
        logging.warning(
            "tensorboardX is not installed: this run writes metrics.jsonl but no TensorBoard "
            "events "
            "(pip install tensorboardX to have them)."
        )
        return None
    return SummaryWriter(logdir=str(logdir), purge_step=start_step)


def _write_hparams(writer, hparams: Mapping[str, Any], step: int) -> None:
    """The run's settings into its event file: TensorBoard's HParams dashboard (one row per run,
    beside its eval metrics) and a 'config' text. Values that are not scalars (tuples, None) are
    shown as text."""
    from tensorboardX.summary import hparams as hparams_summaries

    values = {
        k: v if isinstance(v, (bool, int, float, str)) else str(v) for k, v in hparams.items()
    }
    for summary in hparams_summaries(
        values, {"eval/accuracy": 0.0, "eval/loss": 0.0, "train/loss": 0.0}
    ):
        writer.file_writer.add_summary(summary, global_step=step)
    table = "\n".join(f"| {k} | {v} |" for k, v in values.items())
    writer.add_text("config", "| field | value |\n|---|---|\n" + table, global_step=step)


def _truncate_after(path: Path, step: int) -> None:
    """Keep only the complete rows of metrics.jsonl at or before `step`."""
    if not path.exists():
        return
    kept = [line for line in complete_lines(path) if json.loads(line)["step"] <= step]
    paths.write_text(epath.Path(path), "".join(line + "\n" for line in kept))


def complete_lines(path) -> list[str]:
    """The complete rows of a metrics.jsonl (a local or epath path), as text: the piece after the
    last newline is a half-written row, or empty. None where the file does not exist."""
    return path.read_text().split("\n")[:-1] if path.exists() else []


class Progress:
    """Images per second and time left, measured between consecutive calls to `update`."""

    def __init__(self, *, total_steps: int, batch_size: int, start_step: int):
        self.total_steps, self.batch_size = total_steps, batch_size
        self._step, self._time = start_step, time.perf_counter()

    def restart(self, step: int) -> None:
        """Measure the next interval from now, at `step` (after work that is not training)."""
        self._step, self._time = step, time.perf_counter()

    def update(self, step: int) -> tuple[float, float]:
        """(images/s, ETA seconds) since the last update; the first interval includes
        compilation."""
        now = time.perf_counter()
        seconds = max(now - self._time, 1e-9)
        steps_per_second = (step - self._step) / seconds
        self._step, self._time = step, now
        eta = (self.total_steps - step) / steps_per_second if steps_per_second > 0 else math.inf
        return steps_per_second * self.batch_size, eta


def progress_line(
    step: int,
    total_steps: int,
    scalars: Mapping[str, float],
    images_per_second: float,
    eta_seconds: float,
) -> str:
    """'step  300/2000 (15%) | loss 1.234 | accuracy 0.567 | learning_rate 0.1 | 1,234 img/s | ETA
    2m05s'."""
    width = len(str(total_steps))
    parts = [f"step {step:>{width}}/{total_steps} ({100 * step / total_steps:.0f}%)"]
    parts += [f"{name.split('/')[-1]} {value:.4g}" for name, value in scalars.items()]
    parts += [f"{images_per_second:,.0f} img/s", f"ETA {format_duration(eta_seconds)}"]
    return " | ".join(parts)


def format_duration(seconds: float) -> str:
    """73.2 -> '1m13s'; 4000 -> '1h06m'."""
    if not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
