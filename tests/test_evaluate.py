"""python -m resnet_jax.evaluate: a run's checkpoint on its held-out split, the same numbers the run logged."""
import json

import numpy as np

from resnet_jax import main
from test_errors import command
from tiny_run import tiny_config, write_tiny_npz


def evaluate(*args):
    return command("resnet_jax.evaluate", *args, timeout=300)


def test_evaluate_reports_what_the_run_logged_and_writes_json_and_plot(tmp_path):
    npz = write_tiny_npz(tmp_path / "tiny.npz")
    workdir = tmp_path / "run"
    _, summary = main.run(tiny_config(npz, optim__ema=0.5), str(workdir))
    result = evaluate(f"--workdir={workdir}")
    assert result.returncode == 0, result.stderr[-2000:]
    numbers = json.loads((workdir / "eval" / "step_6.json").read_text())
    assert (workdir / "eval" / "step_6_confusion.png").stat().st_size > 1000
    assert numbers["weights"] == "ema" and numbers["examples"] == 24  # the whole held-out quarter, once
    # The run evaluates the EMA weights on the same split: the same accuracy and loss.
    assert numbers["top1"] == summary["eval/accuracy"]
    np.testing.assert_allclose(numbers["loss"], summary["eval/loss"], rtol=1e-5)
    confusion = np.array(numbers["confusion"])
    assert confusion.sum() == 24 and np.trace(confusion) == round(24 * numbers["top1"])
    assert numbers["top5"] >= numbers["top1"] and len(numbers["per_class_accuracy"]) == 4
    assert numbers["top5"] == 1.0  # 4 classes: the top 5 hold every class

    raw = evaluate(f"--workdir={workdir}", "--step=3", "--raw", "--flip")
    assert raw.returncode == 0, raw.stderr[-2000:]
    raw_numbers = json.loads((workdir / "eval" / "step_3_raw_flip.json").read_text())
    assert raw_numbers["step"] == 3 and raw_numbers["weights"] == "raw" and raw_numbers["flip"]

    missing = evaluate(f"--workdir={workdir}", "--step=5")
    assert missing.returncode == 2 and "no checkpoint of step 5" in missing.stderr.splitlines()[-1]
