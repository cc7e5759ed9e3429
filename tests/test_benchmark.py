"""The benchmark harness runs end to end and prints JAX/PyTorch ratio rows, one per conv path (a smoke test, not a timing)."""
import os
import subprocess
import sys

import pytest

from resnet_jax import benchmark
from resnet_jax.cpu import host_memory, onednn


def test_gpu_peak_takes_the_longest_matching_name():
    assert benchmark.gpu_peak("NVIDIA H200") == 989e12
    assert benchmark.gpu_peak("NVIDIA A100-SXM4-80GB") == 312e12  # not the A10's
    assert benchmark.gpu_peak("NVIDIA L40S") == 362e12  # not the L4's
    assert benchmark.gpu_peak("NVIDIA L4") == 121e12
    assert benchmark.gpu_peak("cpu") is None


def test_quick_benchmark_prints_a_ratio_row():
    pytest.importorskip("torch")
    env = {**os.environ, "XLA_FLAGS": ""}  # not the test session's 8 fake devices
    command = [sys.executable, "-m", "resnet_jax.benchmark", "--quick", "--models", "cifar_resnet8", "--batch", "4",
               "--kinds", "train", "--max-others", "64"]
    out = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300, check=True).stdout
    kept = host_memory.wanted()  # the subprocess inherits this environment
    assert f"host memory: {'freed memory kept for reuse' if kept else 'glibc defaults'}" in out, out
    rows = [line.split() for line in out.splitlines() if line.startswith("cifar_resnet8 ")]
    assert [row[4] for row in rows] == (["xla", "onednn"] if onednn.available() else ["xla"]), out
    for row in rows:
        model, dtype, batch, kind, impl, jax_speed, nchw, nhwc, ratio_nchw, ratio_nhwc = row[:10]
        assert (dtype, batch, kind) == ("float32", "4", "train")
        assert float(jax_speed) > 0 and float(ratio_nchw) > 0 and float(ratio_nhwc) > 0
