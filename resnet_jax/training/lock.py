"""One run per workdir: an exclusive `fcntl` lock on WORKDIR/.lock, holding the host and pid of its
owner.

    # raises WorkdirBusy, naming the holder, if another process trains there with
    workdir_lock(workdir):
        train...

The kernel drops the lock when its process ends, however it ends (SIGKILL included), so a lock file
left by a dead run is simply taken over. Object stores (gs://) have no such locks: there the caller
is trusted (a sweep's launcher runs each point once), and the run says so in its log.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from collections.abc import Iterator

from absl import logging
from etils import epath

from resnet_jax.training import paths

LOCK_FILE = ".lock"


class WorkdirBusy(RuntimeError):
    """Another live process holds the workdir's lock."""


@contextlib.contextmanager
def workdir_lock(workdir: str | epath.Path) -> Iterator[None]:
    """Hold the workdir's lock for the duration of the block (a local workdir's; a remote one is
    not locked)."""
    if paths.is_remote(workdir):
        logging.info(
            "%s is in an object store, which has no locks: nothing stops a second run there.",
            workdir,
        )
        yield
        return
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, LOCK_FILE)
    with open(path, "a+") as file:
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.seek(0)
            holder = file.read().strip() or "another process"
            raise WorkdirBusy(
                f"--workdir={workdir}: another run is training there ({holder}); wait for it to "
                f"finish or stop it, or use another workdir"
            ) from None
        file.seek(0)
        file.truncate()
        file.write(f"host {socket.gethostname()} pid {os.getpid()}\n")
        file.flush()
        try:
            yield
        finally:
            file.seek(0)
            file.truncate()
            fcntl.flock(file, fcntl.LOCK_UN)
