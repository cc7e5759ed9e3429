"""Test session setup: the entry points' runtime settings, eight fake CPU devices, strict rank
promotion, quiet TensorFlow, no GPU for TF.

XLA_FLAGS must be set before jax is first imported, which is why this happens at import time here.
"""

import os
import shutil
import tempfile
from pathlib import Path

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # tests run on CPU, with or without a GPU present
# The shape annotations of resnet_jax.nn are checked in every test (resnet_jax/nn/arrays.py).
os.environ.setdefault("RESNET_JAX_CHECK_SHAPES", "1")
# One XLA compilation cache for this test session, shared by the xdist workers (they inherit the
# controller's environment) and every command the tests start: the same tiny networks compile once
# instead of in each of ~40 runs. JAX keys each entry on the program, the compile options, XLA_FLAGS
# and jaxlib's version, so a hit is the executable a fresh compile would give. The controller
# removes it when the session ends.
OWN_CACHE = "JAX_COMPILATION_CACHE_DIR" not in os.environ
CACHE = Path(
    os.environ.setdefault(
        "JAX_COMPILATION_CACHE_DIR",
        str(Path(tempfile.gettempdir()) / f"resnet_jax_tests_xla_cache_{os.getpid()}"),
    )
)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")

from resnet_jax import runtime  # noqa: E402

# The settings every entry point runs with, so in-process runs and subprocess runs compute
# bit-identically (malloc's aside: tests/test_host_memory.py measures it in subprocesses).
runtime.setup(keep_freed_memory=False)

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")


def pytest_sessionfinish(session):
    # the controller, after its workers
    if OWN_CACHE and not hasattr(session.config, "workerinput"):
        shutil.rmtree(CACHE, ignore_errors=True)


SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """../shared/data beside the checkout; skips the test cleanly when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(
            f"{SHARED_DATA} is absent (real data sets live in ../shared/data beside the checkout)"
        )
    return SHARED_DATA
