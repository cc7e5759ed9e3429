"""Checkpoints with orbax: periodic and final, the last N kept, each verified before it is trusted.

    checkpoints = Checkpoints(workdir + "/checkpoints", keep=3)
    state = checkpoints.restore_latest(target=fresh_state)    # None when there is nothing to resume
    checkpoints.save(step, host_state); checkpoints.close()

Orbax writes each step into a temporary directory and renames it when complete, so a run killed
mid-save leaves no half checkpoint under a step's name. Each checkpoint also stores a SHA-256 of its
arrays: a checkpoint whose files were damaged later fails that check (or fails to read) and is moved
aside to `corrupt/` with a warning, and the one before it is loaded instead. A state holding NaN or
Inf is never saved.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import threading
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from etils import epath
from jax.experimental import multihost_utils

from resnet_jax.training import paths

SAVE_TIMEOUT_SECONDS = (
    120  # the longest wait for pending writes: a save that takes longer has failed
)
READ_DRAIN_SECONDS = (
    60  # the longest wait, after a read of a damaged checkpoint failed, for its other reads
)


class CheckpointError(RuntimeError):
    """A checkpoint could not be written: the run must stop (the message says which step is the
    last intact)."""


class Checkpoints:
    """An orbax CheckpointManager over `directory` that saves and restores a host (NumPy) pytree."""

    def __init__(self, directory: str | epath.Path, *, keep: int, read_only: bool = False):
        # a local folder or gs://: orbax takes either as is
        self.directory = paths.run_path(directory)
        self.read_only = read_only
        # A killed run leaves its unfinished step behind: locally a temporary directory, on gs:// a
        # step directory without orbax's commit marker, which would block saving that step again.
        # Orbax removes both on start. A reader (evaluate, convert, a follower of a running run)
        # must not: that unfinished step may be a live run's save in progress.
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep,
            create=not read_only,
            cleanup_tmp_directories=not read_only,
            read_only=read_only,
        )
        self._manager = ocp.CheckpointManager(self.directory, options=options)
        self._pending: int | None = None  # the step being written in the background

    def steps(self) -> list[int]:
        return list(self._manager.all_steps())

    def save(self, step: int, state: Any) -> None:
        """Save `state` (a pytree of NumPy arrays, every process holding the same) as `step`."""
        bad = [
            jax.tree_util.keystr(path)
            for path, x in jax.tree_util.tree_leaves_with_path(state)
            if np.issubdtype(np.asarray(x).dtype, np.floating) and not np.isfinite(x).all()
        ]
        if bad:
            raise FloatingPointError(f"Not saving step {step}: non-finite values in {bad[:5]}.")
        meta = {"step": step, "sha256": checksum(state), "structure": structure(state)}
        self.check()  # the previous save's failure, if any, stops the run before this one starts
        try:
            self._manager.save(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)
                ),
            )
        except Exception as error:  # noqa: BLE001 -- any failure to start a write stops the run
            raise self._error(step, error) from None
        self._pending = step

    def check(self) -> None:
        """Raise CheckpointError if the write in the background has failed; cheap, so the loop
        calls it each step.

        Orbax's finalising thread consumes a failed write's exception (it logs it), so a write
        counts as failed when it is no longer in progress and orbax does not list its step as
        finished (locally it renames a step's temporary directory to the step's number once every
        file is written; on gs://, which has no rename, it writes a commit marker last).
        """
        if self._pending is None or self._manager.is_saving_in_progress():
            return
        step, self._pending = self._pending, None
        if jax.process_index() == 0 and not self._finished(step):
            raise self._error(step, None)

    def _finished(self, step: int) -> bool:
        if not paths.is_remote(self.directory):
            return (self.directory / str(step)).is_dir()
        self._manager.reload()
        return step in self._manager.all_steps()

    def _error(self, step: int | None, error: Exception | None) -> CheckpointError:
        text = " ".join(str(error).split()) if error is not None else self._diagnose()
        reason = next(
            (
                r
                for r in ("No space left on device", "Read-only file system", "Permission denied")
                if r in text
            ),
            text[:200],
        )
        intact = [s for s in self._manager.all_steps() if s != step]
        last = f"step {max(intact)}" if intact else "none"
        return CheckpointError(
            f"{_which(step)} could not be written to {self.directory} ({reason}); "
            f"the last intact checkpoint is {last}. Fix the folder (space, permissions), then "
            f"rerun the same command to resume"
        )

    def restore_step(self, step: int, target: Any) -> Any:
        """The checkpoint of `step`, shaped like `target`; ValueError naming the steps there are if
        it is absent."""
        self._manager.wait_until_finished()
        if step not in self.steps():
            raise ValueError(
                f"no checkpoint of step {step} in {self.directory}; there are {self.steps()}"
            )
        state, meta = self._restore_state(step, target), self._restore_meta(step)
        if meta.get("sha256") != checksum(state):
            raise ValueError(
                f"checkpoint {step} in {self.directory} does not match the checksum saved with it"
            )
        return state

    def restore_latest(self, target: Any) -> Any | None:
        """The newest checkpoint that reads back intact, shaped like `target`; None if there are
        none.

        Damaged checkpoints are moved aside with a warning. This raises, rather than silently start
        over, if checkpoints exist but none is intact, or if the newest holds a differently shaped
        state (config changed).
        """
        self._manager.wait_until_finished()
        steps, expected = sorted(self.steps(), reverse=True), structure(target)
        for step in steps:
            try:
                meta = self._restore_meta(step)
                saved = meta["structure"]
            except Exception as error:  # noqa: BLE001 -- any failure to read means: do not trust it
                self._skip(step, error)
                continue
            if saved != expected:
                difference = next(
                    (f"saved {a}, expected {b}" for a, b in zip(saved, expected) if a != b),
                    f"{len(saved)} arrays saved, {len(expected)} expected",
                )
                raise ValueError(
                    f"Checkpoint {step} in {self.directory} holds a different state than this run "
                    f"builds ({difference}): the model, optimizer or EMA setting changed. Use a "
                    "new "
                    f"workdir, or the config in the workdir's config.json."
                )
            try:
                state = self._restore_state(step, target)
                if meta.get("sha256") != checksum(state):
                    raise ValueError("its arrays do not match the checksum saved with them")
                return state
            except Exception as error:  # noqa: BLE001 -- any failure to read means: do not trust it
                self._skip(step, error)
        if steps:
            raise RuntimeError(
                f"None of the checkpoints {steps} in {self.directory} could be restored (see the "
                f"warnings above; they are now in {self.directory}/corrupt). Delete the workdir "
                f"to start over."
            )
        return None

    def _restore_state(self, step: int, target: Any) -> Any:
        with _reads_finish_before_loops_close():
            return self._manager.restore(
                step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target))
            )["state"]

    def _restore_meta(self, step: int) -> dict:
        with _reads_finish_before_loops_close():
            return self._manager.restore(
                step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())
            )["meta"]

    def _skip(self, step: int, error: Exception) -> None:
        """Warn in one line, and move a damaged step out of orbax's view, so that a later save of
        that step can succeed."""
        logging.warning(
            "Checkpoint %d in %s is damaged or incomplete (%s: %s); skipping it.",
            step,
            self.directory,
            type(error).__name__,
            " ".join(str(error).split())[:300],
        )
        if self.read_only:  # a reader leaves the run's files as they are
            return
        if jax.process_index() == 0:
            corrupt = self.directory / "corrupt"
            paths.make_dirs(corrupt)
            target, n = corrupt / str(step), 1
            while target.exists():  # the same step damaged again after a rerun
                target, n = corrupt / f"{step}.{n}", n + 1
            (self.directory / str(step)).rename(target)
        if jax.process_count() > 1:
            multihost_utils.sync_global_devices(f"checkpoint_move_aside_{step}")
        self._manager.reload()

    def _diagnose(self) -> str:
        """Why a write into the directory may have failed, as far as the file system tells."""
        try:
            probe = self.directory / ".write_probe"
            probe.write_text("ok")
            probe.unlink()
            if not paths.is_remote(self.directory):
                stats = os.statvfs(self.directory)
                if stats.f_bavail * stats.f_frsize < 64 * 2**20:
                    return "No space left on device"
        except OSError as error:
            return error.strerror or str(error)
        except Exception as error:  # noqa: BLE001 -- object stores raise their own types
            return paths.describe_storage_error(self.directory, error)
        return "the write failed; rerun with --verbose for orbax's log"

    def close(self, timeout: float = SAVE_TIMEOUT_SECONDS) -> None:
        """Wait (at most `timeout` seconds) for pending writes, then release the manager; raises
        CheckpointError if a write failed or never finished. Call before the process exits."""
        outcome: list[BaseException | None] = []

        def finish():
            try:
                self._manager.wait_until_finished()
                self._manager.close()
                outcome.append(None)
            except BaseException as error:  # noqa: BLE001 -- reported to the caller below
                outcome.append(error)

        worker = threading.Thread(target=finish, name="checkpoint-close", daemon=True)
        worker.start()
        worker.join(timeout)
        step = self._pending
        if not outcome:
            raise CheckpointError(
                f"{_which(step)} was still being written to {self.directory} after "
                f"{timeout:.0f} s (a hung or unwritable file system?); the run stops. Fix the "
                f"folder, then rerun the same command to resume from the last intact checkpoint"
            )
        if outcome[0] is not None:
            raise self._error(step, outcome[0])


def finished_steps(directory: str | epath.Path) -> list[int]:
    """The steps orbax lists as finished in `directory` (on gs://, only those with its commit
    marker); [] when the folder does not exist. Only reads: nothing is created or cleaned up."""
    directory = paths.run_path(directory)
    if not directory.is_dir():
        return []
    manager = ocp.CheckpointManager(directory, options=ocp.CheckpointManagerOptions(read_only=True))
    try:
        return list(manager.all_steps())
    finally:
        manager.close()


class _FinishingEventLoop(asyncio.SelectorEventLoop):
    """An event loop that, asked to close, first lets the tasks still running on it finish (at most
    READ_DRAIN_SECONDS), and collects their errors."""

    def close(self) -> None:
        if not self.is_closed() and not self.is_running():
            pending = asyncio.all_tasks(self)
            if pending:
                self.run_until_complete(asyncio.wait(pending, timeout=READ_DRAIN_SECONDS))
                for (
                    task
                ) in pending:  # retrieved here, not logged as "Task exception was never retrieved"
                    if task.done() and not task.cancelled():
                        task.exception()
        super().close()


class _FinishingEventLoopPolicy(asyncio.DefaultEventLoopPolicy):
    def new_event_loop(self) -> asyncio.AbstractEventLoop:
        return _FinishingEventLoop()


@contextlib.contextmanager
def _reads_finish_before_loops_close():
    """Within: the event loops orbax makes wait for their unfinished tasks before they close.

    Orbax runs a restore in a fresh event loop and closes it as soon as the restore returns or
    raises. When one array of a damaged checkpoint fails to read, asyncio.gather raises at once
    while the reads of the other arrays are still running in TensorStore's threads; each of those
    later completes into the closed loop, and TensorStore prints a `RuntimeError: Event loop is
    closed` traceback for it (dozens per damaged step, burying the warning that says which
    checkpoint was skipped). A loop that drains its tasks first leaves none behind.
    """
    previous = asyncio.get_event_loop_policy()
    asyncio.set_event_loop_policy(_FinishingEventLoopPolicy())
    try:
        yield
    finally:
        asyncio.set_event_loop_policy(previous)


def _which(step: int | None) -> str:
    return f"checkpoint of step {step}" if step is not None else "a checkpoint"


def structure(tree: Any) -> list[str]:
    """'path:dtype:shape' of every leaf: what a checkpoint must match to restore into `tree`."""
    return [
        f"{jax.tree_util.keystr(path)}:{np.asarray(leaf).dtype}:{np.shape(leaf)}"
        for path, leaf in jax.tree_util.tree_leaves_with_path(tree)
    ]


def checksum(tree: Any) -> str:
    """SHA-256 over every leaf's path, dtype, shape and bytes: equal iff the states are
    bit-identical."""
    digest = hashlib.sha256()
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        leaf = np.ascontiguousarray(leaf)
        digest.update(f"{jax.tree_util.keystr(path)}:{leaf.dtype}:{leaf.shape};".encode())
        digest.update(leaf.tobytes())
    return digest.hexdigest()
