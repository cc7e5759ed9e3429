"""A timed block that also measures the cores other processes kept busy meanwhile: a timing taken
while something else ran on the CPU is known for what it is (the benchmark's 'clean' rounds,
conv_choice's cache).
"""

from __future__ import annotations

import os
import resource
import time

TICKS = os.sysconf("SC_CLK_TCK")


class Window:
    """`with Window() as w: ...` sets w.seconds (wall time) and w.others (cores other processes
    used, /proc/stat)."""

    @staticmethod
    def _busy() -> float:  # seconds of CPU all processes used since boot
        with open("/proc/stat") as f:
            v = [int(field) for field in f.readline().split()[1:9]]
        return (sum(v) - v[3] - v[4]) / TICKS  # minus idle and iowait

    @staticmethod
    def _own() -> float:
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    def __enter__(self):
        self.start, self.busy, self.own = time.perf_counter(), self._busy(), self._own()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start
        others = (self._busy() - self.busy) - (self._own() - self.own)
        self.others = max(0.0, others) / self.seconds  # cores used by other processes
