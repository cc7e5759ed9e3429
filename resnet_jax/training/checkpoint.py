"""Checkpoints with orbax: periodic and final, the last N kept, each verified before it is trusted.

    checkpoints = Checkpoints(workdir + "/checkpoints", keep=3)
    state = checkpoints.restore_latest(target=fresh_state)    # None when there is nothing to resume
    checkpoints.save(step, host_state); checkpoints.close()

Orbax writes each step into a temporary directory and renames it when complete, so a run killed mid-save
leaves no half checkpoint under a step's name. Each checkpoint also stores a SHA-256 of its arrays: a
checkpoint whose files were damaged later fails that check (or fails to read) and is moved aside to
`corrupt/` with a warning, and the one before it is loaded instead. A state holding NaN or Inf is never saved.
"""
from __future__ import annotations

import hashlib
import os
import shutil
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from jax.experimental import multihost_utils


class Checkpoints:
    """An orbax CheckpointManager over `directory` that saves and restores a host (NumPy) pytree."""

    def __init__(self, directory: str, *, keep: int):
        self.directory = os.path.abspath(directory)
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
        self._manager = ocp.CheckpointManager(self.directory, options=options)

    def steps(self) -> list[int]:
        return list(self._manager.all_steps())

    def save(self, step: int, state: Any) -> None:
        """Save `state` (a pytree of NumPy arrays, every process holding the same) as `step`."""
        bad = [jax.tree_util.keystr(path) for path, x in jax.tree_util.tree_leaves_with_path(state)
               if np.issubdtype(np.asarray(x).dtype, np.floating) and not np.isfinite(x).all()]
        if bad:
            raise FloatingPointError(f"Not saving step {step}: non-finite values in {bad[:5]}.")
        meta = {"step": step, "sha256": checksum(state), "structure": structure(state)}
        self._manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                         meta=ocp.args.JsonSave(meta)))

    def restore_latest(self, target: Any) -> Any | None:
        """The newest checkpoint that reads back intact, shaped like `target`; None if there are none.

        Damaged checkpoints are moved aside with a warning. This raises, rather than silently start over, if
        checkpoints exist but none is intact, or if the newest holds a differently shaped state (config changed).
        """
        self._manager.wait_until_finished()
        steps, expected = sorted(self.steps(), reverse=True), structure(target)
        for step in steps:
            try:
                meta = self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
                saved = meta["structure"]
            except Exception as error:  # noqa: BLE001 -- any failure to read means: do not trust it
                self._skip(step, error)
                continue
            if saved != expected:
                difference = next((f"saved {a}, expected {b}" for a, b in zip(saved, expected) if a != b),
                                  f"{len(saved)} arrays saved, {len(expected)} expected")
                raise ValueError(f"Checkpoint {step} in {self.directory} holds a different state than this run "
                                 f"builds ({difference}): the model, optimizer or EMA setting changed. Use a new "
                                 f"workdir, or the config in the workdir's config.json.")
            try:
                state = self._manager.restore(step, args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(target)))["state"]
                if meta.get("sha256") != checksum(state):
                    raise ValueError("its arrays do not match the checksum saved with them")
                return state
            except Exception as error:  # noqa: BLE001 -- any failure to read means: do not trust it
                self._skip(step, error)
        if steps:
            raise RuntimeError(f"None of the checkpoints {steps} in {self.directory} could be restored (see the "
                               f"warnings above; they are now in {self.directory}/corrupt). Delete the workdir "
                               f"to start over.")
        return None

    def _skip(self, step: int, error: Exception) -> None:
        """Warn, and move a damaged step out of orbax's view, so that a later save of that step can succeed."""
        logging.warning("Checkpoint %d in %s is damaged or incomplete (%s: %s); skipping it.",
                        step, self.directory, type(error).__name__, str(error)[:300])
        if jax.process_index() == 0:
            corrupt = os.path.join(self.directory, "corrupt")
            os.makedirs(corrupt, exist_ok=True)
            target, n = os.path.join(corrupt, str(step)), 1
            while os.path.exists(target):  # the same step damaged again after a rerun
                target, n = os.path.join(corrupt, f"{step}.{n}"), n + 1
            shutil.move(os.path.join(self.directory, str(step)), target)
        if jax.process_count() > 1:
            multihost_utils.sync_global_devices(f"checkpoint_move_aside_{step}")
        self._manager.reload()

    def close(self) -> None:
        """Wait for pending writes; call before the process exits."""
        self._manager.wait_until_finished()
        self._manager.close()


def structure(tree: Any) -> list[str]:
    """'path:dtype:shape' of every leaf: what a checkpoint must match to restore into `tree`."""
    return [f"{jax.tree_util.keystr(path)}:{np.asarray(leaf).dtype}:{np.shape(leaf)}"
            for path, leaf in jax.tree_util.tree_leaves_with_path(tree)]


def checksum(tree: Any) -> str:
    """SHA-256 over every leaf's path, dtype, shape and bytes: equal iff the states are bit-identical."""
    digest = hashlib.sha256()
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        leaf = np.ascontiguousarray(leaf)
        digest.update(f"{jax.tree_util.keystr(path)}:{leaf.dtype}:{leaf.shape};".encode())
        digest.update(leaf.tobytes())
    return digest.hexdigest()
