#!/usr/bin/env bash
# The GPU check of issue 19, as run on a borrowed GPU machine (jax[cuda], flax, optax, orbax, chex, torch;
# no TensorFlow, TFDS, tensorboardX or ml_collections needed). Under 8 minutes; the figures go to
# $OUT/gpu_check.json (or ./gpu_check.json), the log to the terminal. Extra flags pass through, e.g. --smoke.
#
#     bash experiments/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# python3: on the GPU machine that is the interpreter holding jax and torch; a bare `python` may not be.
python="${PYTHON:-python3}"
out="${OUT:-.}/gpu_check.json"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv || true
"$python" -c "import jax; print('jax', jax.__version__, jax.devices())"
exec "$python" -m experiments.gpu_check --out "$out" "$@"
