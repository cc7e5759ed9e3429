"""Signals as a scheduler and a shell send them: a signal ignored when the run started stays ignored
(nohup, `&`), SIGTERM saves the step and exits 3, a second signal stops at once saying so."""

import re
import signal
import subprocess
import sys
import time

from test_errors import command_env, own_lines
from tiny_run import REPO, command_line, wait_for_line, write_tiny_npz

from resnet_jax.training import checkpoint
from resnet_jax.training.signals import stop_requests


def test_an_ignored_sigint_stays_ignored_and_sigterm_is_still_a_stop_request():
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with stop_requests() as requested:
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            signal.raise_signal(signal.SIGINT)  # ignored: no stop request
            assert requested() is None
            signal.raise_signal(signal.SIGTERM)
            assert requested() == "SIGTERM"
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before)


def test_a_run_started_with_sigint_ignored_sent_sigint_then_sigterm_saves_and_exits_3(tmp_path):
    npz = write_tiny_npz(tmp_path / "tiny.npz")
    workdir = tmp_path / "run"
    flags = command_line(npz, train__steps=100000, train__checkpoint_every=1000, train__log_every=1)
    # as `nohup ... &` starts it
    run = subprocess.Popen(
        [sys.executable, "-m", "resnet_jax.main", f"--workdir={workdir}", *flags],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=command_env(),
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    try:

        def steps_in(line):
            return line.startswith("step ") and int(line.split()[1].split("/")[0]) >= 3

        assert wait_for_line(run, steps_in, timeout=240)
        run.send_signal(signal.SIGINT)
        time.sleep(2)
        assert run.poll() is None  # ignored: still training
        run.send_signal(signal.SIGTERM)
        _, stderr = run.communicate(timeout=120)
    finally:
        run.kill()
    assert run.returncode == 3, stderr[-2000:]
    stopped = [line for line in own_lines(stderr) if line.startswith("stopped: ")]
    step = int(re.search(r"SIGTERM after step (\d+); the checkpoint", stopped[0])[1])
    assert checkpoint.Checkpoints(str(workdir / "checkpoints"), keep=3).steps()[-1] == step
