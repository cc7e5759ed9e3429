"""python -m resnet_jax.evaluate: a run's checkpoint on its held-out split, the same numbers the
run logged."""

import json

import numpy as np
from test_errors import command
from tiny_run import command_line, tiny_config, write_tiny_npz

from resnet_jax import trainer


def evaluate(*args):
    return command("resnet_jax.evaluate", *args, timeout=300)


def test_evaluate_reports_what_the_run_logged_and_writes_json_and_plot(tmp_path):
    npz = write_tiny_npz(tmp_path / "tiny.npz")
    workdir = tmp_path / "run"
    _, summary = trainer.run(tiny_config(npz, optim__ema=0.5), str(workdir))
    result = evaluate(f"--workdir={workdir}")
    assert result.returncode == 0, result.stderr[-2000:]
    numbers = json.loads((workdir / "eval" / "step_6.json").read_text())
    assert (workdir / "eval" / "step_6_confusion.png").stat().st_size > 1000
    # the whole held-out quarter, once
    assert numbers["weights"] == "ema" and numbers["examples"] == 24
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


def test_evaluate_weights_file_with_a_config_gives_the_runs_numbers(tmp_path):
    from resnet_jax import convert

    npz = write_tiny_npz(tmp_path / "tiny.npz")
    workdir = tmp_path / "run"
    _, summary = trainer.run(tiny_config(npz), str(workdir))
    convert.convert(str(workdir / "checkpoints" / "6"), str(tmp_path / "weights.safetensors"))
    flags = [f for f in command_line(npz) if not f.startswith("--config.train.")]
    result = evaluate("--weights=" + str(tmp_path / "weights.safetensors"), *flags)
    assert result.returncode == 0, result.stderr[-2000:]
    numbers = json.loads((tmp_path / "eval" / "weights.json").read_text())
    assert numbers["examples"] == 24 and numbers["top1"] == summary["eval/accuracy"]
    np.testing.assert_allclose(numbers["loss"], summary["eval/loss"], rtol=1e-5)
    assert "top-5 1.0000" in result.stdout
    # a run's checkpoint as weights
    checkpoint = evaluate(f"--weights={workdir / 'checkpoints' / '6'}", *flags)
    assert checkpoint.returncode == 0, checkpoint.stderr[-2000:]
    assert (
        json.loads((workdir / "eval" / "weights_step_6.json").read_text())["top1"]
        == numbers["top1"]
    )

    wrong = evaluate(
        "--weights=" + str(tmp_path / "weights.safetensors"), *flags, "--config.model.depth=14"
    )
    assert wrong.returncode == 2
    line = wrong.stderr.splitlines()[-1]  # depth 14 has two blocks per stage, the weights one
    assert (
        line.startswith(
            f"error: --weights={tmp_path / 'weights.safetensors'}: Missing key(s) in the weights "
            f"for the model: "
        )
        and "/stage1_block1/" in line
    )
    # --weights without --config: one of tests/test_errors.py's cases.


def test_without_matplotlib_the_confusion_plot_is_skipped_with_a_warning(
    tmp_path, monkeypatch, caplog
):
    import sys

    from resnet_jax.training import evaluation

    # as where the [plots] extra is not installed
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    evaluation.plot_confusion(np.eye(3), tmp_path / "c.png", "t")
    assert not (tmp_path / "c.png").exists()
    assert "pip install -e .[plots]" in caplog.text


def test_follow_evaluates_every_checkpoint_of_a_concurrent_run_exactly_once(tmp_path):
    """A short training in one process, `evaluate --follow` in another started before it: every
    checkpoint the run keeps is evaluated once, in order, and the follower ends with the last step;
    a second follower finds nothing left to do."""
    import subprocess
    import sys

    from test_errors import command_env
    from tiny_run import REPO

    npz = write_tiny_npz(tmp_path / "tiny.npz")
    workdir = tmp_path / "run"
    flags = command_line(npz, train__steps=8, train__checkpoint_every=2, train__keep_checkpoints=10)
    follower = subprocess.Popen(
        [sys.executable, "-m", "resnet_jax.evaluate", f"--workdir={workdir}", "--follow",
         "--poll_seconds=1", "--follow_timeout=240"],
        cwd=REPO, env=command_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        run = subprocess.run(
            [sys.executable, "-m", "resnet_jax.main", f"--workdir={workdir}", *flags],
            cwd=REPO, env=command_env(), capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr[-2000:]
        _, stderr = follower.communicate(timeout=300)
    finally:
        follower.kill()
    assert follower.returncode == 0, stderr[-2000:]
    log = workdir / "eval_npz" / "metrics.jsonl"
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert [row["step"] for row in rows] == [2, 4, 6, 8]
    logged = [json.loads(row) for row in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert (
        rows[-1]["eval/accuracy"]
        == [r for r in logged if "eval/accuracy" in r][-1]["eval/accuracy"]
    )
    # TensorBoard reads the follower's folder as a run of its own, with the same tags
    events = sorted((workdir / "eval_npz").glob("events.out.tfevents.*"))
    assert events and {"eval/accuracy", "eval/top5", "eval/loss"} <= event_tags(events)
    again = evaluate(f"--workdir={workdir}", "--follow", "--follow_timeout=5")
    assert again.returncode == 0 and len(log.read_text().splitlines()) == 4
    # another data set (here the same file under a name of its own): a folder of its own
    other = evaluate(
        f"--workdir={workdir}", "--follow", "--follow_timeout=5", f"--data=path={npz}",
        "--name=copy", "--flip",
    )  # fmt: skip
    assert other.returncode == 0, other.stderr[-2000:]
    copy = [json.loads(line) for line in (workdir / "eval_copy" / "metrics.jsonl").open()]
    assert [row["step"] for row in copy] == [2, 4, 6, 8]


def event_tags(files) -> set[str]:
    """The scalar tags of TensorBoard event files (tensorboard's own reader)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = set()
    for file in files:
        accumulator = EventAccumulator(str(file))
        accumulator.Reload()
        tags |= set(accumulator.Tags()["scalars"])
    return tags


def test_follow_without_checkpoints_times_out_in_one_line(tmp_path):
    (tmp_path / "run").mkdir()
    result = evaluate(
        f"--workdir={tmp_path / 'run'}", "--follow", "--follow_timeout=2", "--poll_seconds=1"
    )
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: --follow: no new checkpoint in") and "for 2 s" in last


def test_follow_data_of_a_field_that_picks_no_examples_is_one_line(tmp_path):
    result = evaluate(f"--workdir={tmp_path}", "--follow", "--data=augment=none")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: --data=augment=none: give FIELD=VALUE, FIELD one of name, path, data_dir, "
        "manual_dir, split_seed, eval_fraction, image_size"
    ]
