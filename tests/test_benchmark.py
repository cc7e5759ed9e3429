"""The benchmark harness and the GPU check run end to end and print JAX/PyTorch ratios (smoke
tests, not timings)."""

import datetime
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from experiments import gpu_check
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
    command = [
        sys.executable,
        "-m",
        "resnet_jax.benchmark",
        "--quick",
        "--models",
        "cifar_resnet8",
        "--batch",
        "4",
        "--kinds",
        "train",
        "--max_others",
        "64",
    ]
    out = subprocess.run(
        command, capture_output=True, text=True, env=env, timeout=300, check=True
    ).stdout
    kept = host_memory.wanted()  # the subprocess inherits this environment
    assert f"host memory: {'freed memory kept for reuse' if kept else 'glibc defaults'}" in out, out
    rows = [line.split() for line in out.splitlines() if line.startswith("cifar_resnet8 ")]
    assert [row[4] for row in rows] == (["xla", "onednn"] if onednn.available() else ["xla"]), out
    for row in rows:
        model, dtype, batch, kind, impl, jax_speed, nchw, nhwc, ratio_nchw, ratio_nhwc = row[:10]
        assert (dtype, batch, kind) == ("float32", "4", "train")
        assert float(jax_speed) > 0 and float(ratio_nchw) > 0 and float(ratio_nhwc) > 0


REPO = Path(__file__).resolve().parents[1]
# The GPU machine's environment: no TensorFlow, TFDS, tensorboardX or ml_collections
# (tests/without_tensorflow).
WITHOUT_TENSORFLOW = {
    **os.environ,
    "XLA_FLAGS": "",
    "PYTHONPATH": str(REPO / "tests" / "without_tensorflow"),
}


def test_benchmark_models_and_train_step_need_no_tensorflow():
    code = (
        "import sys; from resnet_jax import runtime; runtime.setup(keep_freed_memory=False); "
        "import resnet_jax.benchmark, resnet_jax.training.train, resnet_jax.nn.models; "
        "print('torch' in sys.modules, sys.modules['tensorflow'])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=WITHOUT_TENSORFLOW,
        cwd=REPO,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    # torch only when asked for; TF absent
    assert out.stdout.split() == ["False", "None"], out.stdout


def test_gpu_check_summary_pairs_each_model_with_its_twins():
    ours = {
        "rows": [
            {"model": "resnet50", "batch": 256, "img_s": 3000.0, "mfu": 0.075},
            {"model": "cifar_resnet20", "batch": 512, "img_s": 40000.0, "mfu": None},
        ]
    }
    theirs = {
        "rows": [
            {"model": "resnet50", "compiled": False, "img_s": 2000.0},
            {"model": "resnet50", "compiled": True, "img_s": 2500.0},
            {"model": "cifar_resnet20", "compiled": False, "img_s": 20000.0},
        ]
    }
    rows = gpu_check.summary(ours, theirs)
    assert [
        (r["model"], r["jax_over_torch_eager"], r["jax_over_torch_compiled"]) for r in rows
    ] == [("resnet50", 1.5, 1.2), ("cifar_resnet20", 2.0, None)]


def test_gpu_check_smoke_runs_on_cpu_without_tensorflow(tmp_path):
    out = tmp_path / "gpu_check.json"
    command = [sys.executable, "-m", "experiments.gpu_check", "--smoke", "--out", str(out)]
    run = subprocess.run(
        command, capture_output=True, text=True, env=WITHOUT_TENSORFLOW, cwd=REPO, timeout=300
    )
    assert run.returncode == 0 and "jax/eager" in run.stdout, run.stdout + run.stderr
    record = json.loads(out.read_text())
    assert (
        datetime.datetime.fromisoformat(record["date"]).year >= 2026 and record["device"] == "cpu"
    )
    assert [r["model"] for r in record["summary"]] == ["cifar_resnet8", "cifar_resnet20"]
    # no bf16 peak for a CPU
    assert all(r["jax_img_s"] > 0 and r["mfu"] is None for r in record["summary"])
    if importlib.util.find_spec("torch") is not None:
        assert all(
            r["torch_eager_img_s"] > 0 and r["jax_over_torch_eager"] > 0 for r in record["summary"]
        )
        assert "error" not in record["torch"], record["torch"]
    assert "error" not in record["jax"], record["jax"]


@pytest.mark.slow
# ~4 minutes: inductor compiles C++ on 2 cores
def test_gpu_check_smoke_times_torch_compile_too(
    tmp_path,
):
    pytest.importorskip("torch")
    out = tmp_path / "gpu_check.json"
    command = [
        sys.executable,
        "-m",
        "experiments.gpu_check",
        "--smoke",
        "--torch_compile",
        "--out",
        str(out),
    ]
    run = subprocess.run(
        command, capture_output=True, text=True, env=WITHOUT_TENSORFLOW, cwd=REPO, timeout=900
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert all(r["jax_over_torch_compiled"] > 0 for r in json.loads(out.read_text())["summary"])


def test_the_cpu_is_named_with_the_flags_that_decide_the_kernels(tmp_path):
    from resnet_jax.cpu.machine import cpu_description

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\ncpu family\t: 6\n"
        "model\t\t: 143\nflags\t\t: fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n\n"
        "processor\t: 1\nmodel name\t: ignored\n"
    )
    assert cpu_description(str(cpuinfo)).startswith(
        "Intel(R) Xeon(R) Platinum 8480+ (family 6, model 143), "
    )
    assert cpu_description(str(cpuinfo)).endswith(" cores; avx2 avx512f avx512_bf16 amx_bf16")
    cpuinfo.write_text(
        "model name\t: AMD EPYC\ncpu family\t: 25\nmodel\t\t: 17\nflags\t\t: avx2 avx512f "
        "avx512_bf16\n"
    )
    assert cpu_description(str(cpuinfo)).endswith("; avx2 avx512f avx512_bf16, no amx_bf16")
    assert "unreadable" in cpu_description(str(tmp_path / "missing"))
