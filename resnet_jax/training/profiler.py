"""A jax.profiler trace of a few training steps (train.profile = "START:COUNT"), for TensorBoard.

    tensorboard --logdir=WORKDIR/profile  # the Profile tab: XLA ops, fusions, custom calls

The trace is written on this machine first (jax's profiler writes local files) and copied under
WORKDIR/profile when it stops, so a gs:// workdir gets it too. Off unless asked: no cost then.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import jax
from etils import epath

from resnet_jax.training import paths


class Trace:
    """Starts tracing; `stop(state)` waits for the traced steps, stops, copies the files."""

    def __init__(self, workdir: str | epath.Path):
        self.target = paths.run_path(workdir) / "profile"
        self.local = Path(tempfile.mkdtemp(prefix="resnet_jax_profile_"))
        jax.profiler.start_trace(str(self.local))

    def stop(self, state) -> None:
        jax.block_until_ready(state)  # the traced steps have run, not just been dispatched
        jax.profiler.stop_trace()
        if jax.process_index() == 0:
            for file in sorted(p for p in self.local.rglob("*") if p.is_file()):
                destination = self.target / file.relative_to(self.local).as_posix()
                paths.make_dirs(destination.parent)
                destination.write_bytes(file.read_bytes())
        shutil.rmtree(self.local, ignore_errors=True)
