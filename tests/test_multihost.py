"""Two processes on one machine, joined by jax.distributed over localhost, train as one
data-parallel run.

Each process has 2 CPU devices and reads its own shard of the data; gradients and BatchNorm
statistics are reduced over all 4 devices (gloo collectives on CPU). Both processes must end with
bit-identical state and write one shared set of checkpoints. (That either mode equals one device on
the global batch is test_parallel's.)
"""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
from tiny_run import REPO, write_tiny_npz

from resnet_jax.training import checkpoint

WORKER = """
import json, sys
import jax
port, process_id, npz, workdir, mode = sys.argv[1], int(sys.argv[2]), *sys.argv[3:6]
jax.distributed.initialize(f"localhost:{port}", num_processes=2, process_id=process_id)
sys.path.insert(0, "tests")
from resnet_jax import build, trainer
from resnet_jax.training import checkpoint
from tiny_run import tiny_config
config = tiny_config(npz, train__parallel=mode)
build.validate_config(config, device_count=jax.device_count(), process_count=jax.process_count())
state, summary = trainer.run(config, workdir)
summary.pop("train/images_per_second")  # a timing: differs between processes
print("RESULT " + json.dumps({"devices": jax.device_count(), "summary": summary,
                              "checksum": checkpoint.checksum(state)}), flush=True)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("mode", ["sharding", pytest.param("pmap", marks=pytest.mark.slow)])
def test_two_processes_train_as_one(tmp_path, mode):
    npz = write_tiny_npz(tmp_path / "tiny.npz")
    env = {
        **os.environ,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
        "JAX_PLATFORMS": "cpu",
    }
    port, workdir = free_port(), tmp_path / "run"
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(port), str(i), str(npz), str(workdir), mode],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    results = []
    try:
        for process in processes:
            stdout, stderr = process.communicate(timeout=240)
            assert process.returncode == 0, stderr[-3000:]
            results += [
                json.loads(line[7:]) for line in stdout.splitlines() if line.startswith("RESULT ")
            ]
    finally:
        for process in processes:
            process.kill()
    assert len(results) == 2 and results[0]["devices"] == 4
    assert results[0]["checksum"] == results[1]["checksum"]  # bit-identical state on both processes
    assert results[0]["summary"] == results[1]["summary"]
    assert np.isfinite(results[0]["summary"]["train/loss"])
    assert checkpoint.Checkpoints(str(workdir / "checkpoints"), keep=3).steps() == [3, 6]
