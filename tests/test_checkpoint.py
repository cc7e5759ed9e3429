"""Checkpoints: exact round trips, keep-last-N, damaged ones skipped, and a SIGKILLed run resuming
exactly."""

import asyncio
import contextlib
import glob
import json
import os
import signal
import subprocess
import sys
import threading
import time

import chex
import jax
import numpy as np
import pytest
from tiny_run import REPO, command_line, tiny_config, wait_for_line, write_tiny_npz

from resnet_jax import trainer
from resnet_jax.nn.models import get_model
from resnet_jax.training import checkpoint, optim, train


@pytest.fixture(scope="module")
def state():
    """A host TrainState with momentum, EMA and integer leaves."""
    model = get_model("cifar_resnet", depth=8, width_multiplier=0.25, num_classes=4)
    tx = optim.make_optimizer("sgd", 0.1, momentum=0.9)
    return jax.device_get(
        train.create_train_state(model, tx, jax.random.key(0), image_shape=(8, 8, 3), ema=True)
    )


def with_step(state, step):
    """`state` at `step`, with params changed so that each step's checkpoint differs."""
    return state._replace(
        step=np.asarray(step, np.int32),
        params=jax.tree.map(lambda p: p + np.float32(step), state.params),
    )


def save_steps(directory, state, steps, keep=5):
    checkpoints = checkpoint.Checkpoints(str(directory), keep=keep)
    for step in steps:
        checkpoints.save(step, with_step(state, step))
    checkpoints.close()


def test_round_trip_is_bit_exact_and_keeps_the_last_n(tmp_path, state):
    save_steps(tmp_path, state, [1, 2, 3, 4], keep=2)
    checkpoints = checkpoint.Checkpoints(str(tmp_path), keep=2)
    assert checkpoints.steps() == [3, 4]
    restored = checkpoints.restore_latest(target=state)
    assert isinstance(restored, train.TrainState)
    chex.assert_trees_all_equal(restored, with_step(state, 4))
    assert checkpoint.checksum(restored) == checkpoint.checksum(with_step(state, 4))


def test_nothing_to_restore_gives_none(tmp_path, state):
    assert checkpoint.Checkpoints(str(tmp_path), keep=2).restore_latest(target=state) is None


def flip_bytes(step_dir):
    """Flip a byte in every file of the step's state: its metadata no longer parses."""
    for root, _, files in os.walk(step_dir / "state"):
        for name in files:
            path = os.path.join(root, name)
            data = bytearray(open(path, "rb").read())
            if len(data) > 64:
                data[len(data) // 2] ^= 0xFF
                open(path, "wb").write(bytes(data))


def truncate_array_data(step_dir):
    """Empty the step's array data files, metadata intact: reads of arrays fail while others are in
    flight."""
    for path in glob.glob(str(step_dir / "state" / "ocdbt.process_*" / "d" / "*")):
        open(path, "wb").close()


@pytest.mark.parametrize("damage", [flip_bytes, truncate_array_data])
def test_a_damaged_latest_checkpoint_is_skipped_for_the_one_before(
    tmp_path, state, caplog, capfd, damage
):
    save_steps(tmp_path, state, [1, 2])
    damage(tmp_path / "2")
    checkpoints = checkpoint.Checkpoints(str(tmp_path), keep=5)
    restored = checkpoints.restore_latest(target=state)
    assert int(restored.step) == 1
    chex.assert_trees_all_equal(restored, with_step(state, 1))
    assert checkpoints.steps() == [1] and (tmp_path / "corrupt" / "2").is_dir()
    checkpoints.save(2, with_step(state, 2))  # the step can be written again
    checkpoints.close()
    # One warning line, naming the step and saying what happens; nothing else on stderr (issue 14:
    # the fallback printed 115-245 lines of "RuntimeError: Event loop is closed" from reads left
    # running).
    warnings = [
        r.getMessage()
        for r in caplog.records
        if r.levelname == "WARNING" and "Checkpoint 2" in r.getMessage()
    ]
    assert (
        len(warnings) == 1 and "\n" not in warnings[0] and warnings[0].endswith("skipping it.")
    ), warnings
    time.sleep(0.5)  # reads still running would complete now, into a closed loop
    stderr = capfd.readouterr().err
    assert "Event loop is closed" not in stderr and "Traceback" not in stderr, stderr[-2000:]


def test_reads_still_running_when_a_restore_fails_finish_before_its_loop_closes():
    """What TensorStore does when one read of a damaged checkpoint fails: the other reads end
    later, in their own threads, and hand their results to the loop orbax restored in. Without the
    drain that loop is closed."""
    from orbax.checkpoint._src import asyncio_utils  # the run_sync every orbax restore goes through

    def restore(late: list, threads: list):
        async def read(fail: bool):
            loop = asyncio.get_running_loop()
            done = loop.create_future()

            def finish():
                time.sleep(0.2)
                try:
                    loop.call_soon_threadsafe(done.set_result, None)
                except RuntimeError as error:  # "Event loop is closed"
                    late.append(error)

            threads.append(threading.Thread(target=finish))
            threads[-1].start()
            if fail:
                raise ValueError("a damaged array")
            await done

        async def read_all():
            await asyncio.gather(read(True), *(read(False) for _ in range(4)))

        return asyncio_utils.run_sync(read_all())

    for drained in (False, True):
        late, threads = [], []
        with checkpoint._reads_finish_before_loops_close() if drained else contextlib.nullcontext():
            with pytest.raises(ValueError, match="a damaged array"):
                restore(late, threads)
        for thread in threads:
            thread.join()
        assert bool(late) != drained, (drained, late)


def test_a_truncated_checkpoint_is_skipped(tmp_path, state):
    save_steps(tmp_path, state, [1, 2])
    for root, _, files in os.walk(tmp_path / "2" / "state"):
        for name in files:
            open(os.path.join(root, name), "wb").close()
    assert int(checkpoint.Checkpoints(str(tmp_path), keep=5).restore_latest(target=state).step) == 1


def test_an_unfinished_save_is_invisible(tmp_path, state):
    save_steps(tmp_path, state, [1])
    # what a kill mid-save leaves
    (tmp_path / "2.orbax-checkpoint-tmp-1234" / "state").mkdir(parents=True)
    checkpoints = checkpoint.Checkpoints(str(tmp_path), keep=5)
    assert checkpoints.steps() == [1] and int(checkpoints.restore_latest(target=state).step) == 1


def test_when_no_checkpoint_is_intact_it_refuses_to_start_over(tmp_path, state):
    save_steps(tmp_path, state, [1])
    for root, _, files in os.walk(tmp_path / "1"):
        for name in files:
            open(os.path.join(root, name), "wb").close()
    with pytest.raises(RuntimeError, match="None of the checkpoints"):
        checkpoint.Checkpoints(str(tmp_path), keep=5).restore_latest(target=state)


def test_a_checkpoint_of_another_model_is_an_error_not_damage(tmp_path, state):
    save_steps(tmp_path, state, [1])
    other = state._replace(ema=None)  # e.g. EMA switched off in the config
    with pytest.raises(ValueError, match="holds a different state"):
        checkpoint.Checkpoints(str(tmp_path), keep=5).restore_latest(target=other)
    assert checkpoint.Checkpoints(str(tmp_path), keep=5).steps() == [1]  # left where it was


def test_a_state_with_nan_is_never_saved(tmp_path, state):
    broken = state._replace(params=jax.tree.map(lambda p: p * np.nan, state.params))
    checkpoints = checkpoint.Checkpoints(str(tmp_path), keep=5)
    with pytest.raises(FloatingPointError, match="Not saving step 7"):
        checkpoints.save(7, broken)
    checkpoints.close()
    assert checkpoints.steps() == []


def test_a_run_killed_at_any_moment_resumes_to_the_same_params(tmp_path):
    """SIGKILL the entry point mid-run, rerun it: the final state equals an uninterrupted run's,
    bit for bit."""
    npz = write_tiny_npz(tmp_path / "tiny.npz")
    overrides = dict(
        train__steps=40, train__checkpoint_every=4, train__log_every=1, train__eval_every=100
    )
    _, _ = trainer.run(tiny_config(npz, **overrides), str(tmp_path / "straight"))
    expected = checkpoint.Checkpoints(str(tmp_path / "straight" / "checkpoints"), keep=3)

    workdir = tmp_path / "killed"
    command = [
        sys.executable,
        "-m",
        "resnet_jax.main",
        f"--workdir={workdir}",
        *command_line(npz, **overrides),
    ]
    # conftest's XLA_FLAGS: the same 8-device CPU backend
    process = subprocess.Popen(
        command,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=os.environ.copy(),
    )
    # Kill at once when step 14 is reported: mid-run, maybe mid-save.
    wait_for_line(process, lambda line: line.startswith("step 14/"), timeout=120)
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=30) == -signal.SIGKILL
    saved = checkpoint.Checkpoints(str(workdir / "checkpoints"), keep=3).steps()
    assert saved and max(saved) < 40, saved  # killed after a checkpoint and before the end

    resumed, _ = trainer.run(tiny_config(npz, **overrides), str(workdir))
    reference = expected.restore_latest(target=resumed)
    assert int(resumed.step) == int(reference.step) == 40
    chex.assert_trees_all_equal(resumed, reference)
    # The metrics the killed run wrote after its checkpoint were dropped, not repeated.
    steps = [
        json.loads(line)["step"] for line in open(workdir / "metrics.jsonl") if "train/loss" in line
    ]
    assert steps == list(range(1, 41))
