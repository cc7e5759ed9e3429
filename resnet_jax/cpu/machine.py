"""The CPU a process runs on, as /proc/cpuinfo describes it: its name and the units our kernels'
speed depends on."""

from __future__ import annotations

import functools
import os

BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo flags of CPUs with native bf16 arithmetic


def cpu_fields(cpuinfo: str = "/proc/cpuinfo") -> dict[str, str]:
    """The first processor's fields in /proc/cpuinfo ('model name', 'flags', ...); empty where it
    is unreadable."""
    try:
        with open(cpuinfo) as f:
            block = f.read().split("\n\n")[0]
    except OSError:
        return {}
    return {
        k.strip(): v.strip()
        for k, v in (line.split(":", 1) for line in block.splitlines() if ":" in line)
    }


@functools.cache
def bf16_units(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether this CPU has native bf16 arithmetic (AVX512-BF16 or AMX-BF16), where oneDNN's bf16
    kernels beat XLA's; without, oneDNN would emulate bf16 or fall back to reference code."""
    flags = cpu_fields(cpuinfo).get("flags", "").split()
    return any(flag in flags for flag in BF16_FLAGS)


def isa_class(cpuinfo: str = "/proc/cpuinfo") -> str:
    """The widest of the instruction sets that decide oneDNN's and XLA's kernels here: 'amx_bf16',
    'avx512_bf16', 'avx512f', 'avx2' or 'baseline' (the key of the shipped convolution table)."""
    flags = set(cpu_fields(cpuinfo).get("flags", "").split())
    return next((flag for flag in ISA_CLASSES if flag in flags), "baseline")


# the instruction-set classes, widest first
ISA_CLASSES = ("amx_bf16", "avx512_bf16", "avx512f", "avx2")
# what decides our kernels' speed, and PyTorch's
CPU_FLAGS = (
    "avx2",
    "avx512f",
    "avx512_bf16",
    "amx_bf16",
)


def cpu_description(cpuinfo: str = "/proc/cpuinfo") -> str:
    """The CPU a figure was measured on, as `lscpu` names it, with the flags that matter here: 'AMD
    EPYC (family 25, model 17), 2 cores; avx2 avx512f avx512_bf16, no amx_bf16'."""
    fields = cpu_fields(cpuinfo)
    if not fields:
        return f"unknown ({cpuinfo} unreadable), {os.cpu_count()} cores"
    flags = set(fields.get("flags", "").split())
    has = " ".join(f for f in CPU_FLAGS if f in flags)
    lacks = " ".join(f for f in CPU_FLAGS if f not in flags)
    units = ", ".join(([has] if has else []) + ([f"no {lacks}"] if lacks else []))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (
        f"{fields.get('model name', 'unknown')} (family {fields.get('cpu family', '?')}, model "
        f"{fields.get('model', '?')}), {cores} cores; {units}"
    )
