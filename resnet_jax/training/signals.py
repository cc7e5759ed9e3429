"""Preemption: SIGTERM (how a preempted VM or a cluster scheduler stops a job) and SIGINT (Ctrl-C)
ask the loop to finish its step, save a checkpoint and stop; rerunning the same command resumes.

    with stop_requests() as requested:  # installs the handlers for the block, then restores them
        train_and_evaluate(..., stop_requested=requested)

A signal that was ignored when the block began stays ignored: a run started with `nohup` or `&`
from a shell has SIGINT ignored, and a SIGINT reaching it (a terminal's, a process group's) must not
stop it, nor count as a first signal. A second signal while the first is being honoured stops at
once, as the default handler would, after one line saying that the step being saved is dropped and
the last intact checkpoint stays.
"""

from __future__ import annotations

import contextlib
import signal
import sys
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
    if threading.current_thread() is not threading.main_thread():  # handlers are set there only
        yield lambda: None
        return

    def handle(signum, frame):
        name = signal.Signals(signum).name
        if received:  # asked twice: stop now
            print(
                f"stopped: {name} while stopping after {received[0]}: exiting at once; a "
                f"checkpoint still being written is dropped, the last intact one is kept: rerun "
                f"the same command to resume from it",
                file=sys.stderr,
                flush=True,
            )
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)
        received.append(name)

    ignored = [s for s in SIGNALS if signal.getsignal(s) is signal.SIG_IGN]
    previous = {s: signal.signal(s, handle) for s in SIGNALS if s not in ignored}
    try:
        yield lambda: received[0] if received else None
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
