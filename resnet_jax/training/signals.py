"""Preemption: SIGTERM (how a preempted TPU VM or a cluster scheduler stops a job) and SIGINT
(Ctrl-C) ask the loop to finish its step, save a checkpoint and stop; rerunning the same command
resumes from it.

    with stop_requests() as requested:    # installs the handlers for the block, restores the old
    ones after
        train_and_evaluate(..., stop_requested=requested)

A second signal while the first is being honoured stops at once, as the default handler would.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Stopped(Exception):
    """The loop saved a checkpoint and stopped at a signal's request."""

    def __init__(self, signal_name: str, step: int):
        super().__init__(
            f"{signal_name} after step {step}; the checkpoint of that step is saved: rerun the "
            f"same command to resume"
        )
        self.signal_name, self.step = signal_name, step


@contextlib.contextmanager
def stop_requests() -> Iterator[Callable[[], str | None]]:
    """Yields `requested()`: the name of the first signal received in the block, or None."""
    received: list[str] = []
    if threading.current_thread() is not threading.main_thread():  # handlers can only be set there
        yield lambda: None
        return

    def handle(signum, frame):
        if received:  # asked twice: stop now
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)
        received.append(signal.Signals(signum).name)

    previous = {s: signal.signal(s, handle) for s in SIGNALS}
    try:
        yield lambda: received[0] if received else None
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
