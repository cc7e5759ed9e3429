"""host_memory.keep_freed_memory: a large block freed by a worker thread comes back without page
faults."""

import json
import os
import platform
import subprocess
import sys

import pytest

from resnet_jax.cpu import host_memory

# Run in a fresh interpreter (the setting is process-wide and must come before threads allocate): a
# worker thread, as XLA's are, mallocs 200 MB, writes every page, frees it, and does it again;
# printed: the minor page faults of the second round.
PROBE = r"""
import ctypes, json, resource, sys, threading
from resnet_jax.cpu import host_memory
kept = host_memory.keep_freed_memory()
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
size, faults = 200 << 20, []
def rounds():
    for _ in range(2):
        before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
        block = libc.malloc(size)
        ctypes.memset(block, 1, size)
        faults.append(resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before)
        libc.free(block)
t = threading.Thread(target=rounds); t.start(); t.join()
print(json.dumps({"kept": kept, "second_round_faults": faults[1]}))
"""


def probe(keep: str) -> dict:
    env = dict(os.environ, **{host_memory.ENV: keep})
    out = subprocess.run(
        [sys.executable, "-c", PROBE],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")
def test_freed_memory_is_reused_without_page_faults():
    kept, default = probe("1"), probe("0")
    assert kept["kept"] and not default["kept"]
    pages = (200 << 20) // os.sysconf("SC_PAGE_SIZE")
    assert kept["second_round_faults"] < pages // 100, kept  # the same pages again
    # glibc's default maps the block afresh: a fault per page (per huge page where THP is on for all
    # memory)
    assert default["second_round_faults"] >= 50, default


def test_keep_freed_memory_can_be_turned_off(monkeypatch):
    monkeypatch.setattr(host_memory, "_applied", False)
    monkeypatch.setenv(host_memory.ENV, "0")
    assert host_memory.keep_freed_memory() is False


def test_keep_freed_memory_warns_when_jax_has_started():
    code = (
        "import warnings, jax, jax.numpy as jnp; jnp.ones(3).block_until_ready()\n"
        "from resnet_jax.cpu import host_memory\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always'); host_memory.keep_freed_memory()\n"
        "print([str(w.message) for w in caught])"
    )
    env = dict(os.environ, **{host_memory.ENV: "1"})
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    ).stdout
    if platform.libc_ver()[0] == "glibc":
        assert "after JAX's backend started" in out, out
