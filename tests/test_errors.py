"""Bad input through the real commands: one line on stderr naming the field or path, no traceback,
exit 2, and nothing written. Plus the run-time failures: a full disk, a second run on a workdir, a
preempting signal, a feature map collapsed to 1x1."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
DEFAULT = "--config=configs/default.py"
# Log lines of absl, XLA and TensorFlow: everything else on stderr is the command's own words.
LOG_LINE = re.compile(r"^([IWEF]\d{4} |WARNING: All log messages|I0000 )")


def command_env() -> dict[str, str]:
    """The environment of a command the tests start: quiet TensorFlow, no GPU, and not the tests'
    eight fake devices (they would change the runs' device counts)."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    env.pop("XLA_FLAGS", None)
    return env


def command(*args: str, cwd=REPO, timeout=120, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=command_env(),
        **kwargs,
    )


def own_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip() and not LOG_LINE.match(line)]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return make_files(tmp_path_factory.mktemp("inputs"))


def make_files(root: Path) -> Path:
    """A tiny .npz data set, a damaged one, one without labels, and a plain file, in `root`."""
    rng = np.random.default_rng(0)
    np.savez(
        root / "tiny.npz",
        images=rng.integers(0, 255, (40, 32, 32, 3), dtype=np.uint8),
        labels=np.arange(40) % 4,
    )
    (root / "damaged.npz").write_bytes(b"not an archive")
    np.savez(root / "nolabels.npz", images=np.zeros((4, 8, 8), np.uint8))
    (root / "a_file").write_text("x")
    (root / "raises.py").write_text("def get_config():\n    raise KeyError('its own key')\n")
    (root / "returns_none.py").write_text("def get_config():\n    return None\n")
    (root / "sweep_raises.py").write_text("def get_sweep(arg=None):\n    return 1 / 0\n")
    return root


TINY = (
    "--config.data.name=npz",
    "--config.data.path={tiny}",
    "--config.data.batch_size=8",
    "--config.data.eval_batch_size=8",
    "--config.train.steps=4",
    "--config.optim.warmup_steps=1",
)

# (extra arguments, what the line must say). `{tiny}`, `{root}` are filled in; the workdir is added.
MAIN_CASES = [
    (
        ["--config.train.stepz=10"],
        r"--config.train.stepz: .*no field 'stepz'; did you mean 'steps'",
    ),
    (["--config.optm.lr=0.1"], r"--config.optm.lr: .*no field 'optm'; did you mean 'optim'"),
    (["--config.train.steps=abc"], r"--config.train.steps=abc: invalid literal"),
    (["--config.model.stage_strides=(1,2"], r"--config.model.stage_strides=\(1,2: "),
    (["--nosuchflag"], r"unknown flag --nosuchflag"),
    (["extra_argument"], r"Unexpected arguments: \['extra_argument'\]"),
    (["--config.train.steps=0"], r"config.train.steps=0: must be >= 1"),
    (["--config.train.eval_every=0"], r"config.train.eval_every=0: must be >= 1"),
    (["--config.train.log_every=0"], r"config.train.log_every=0: must be >= 1"),
    (["--config.train.checkpoint_every=0"], r"config.train.checkpoint_every=0: must be >= 1"),
    (["--config.train.keep_checkpoints=0"], r"config.train.keep_checkpoints=0: must be >= 1"),
    (["--config.train.parallel=gpu"], r"config.train.parallel='gpu': use one of"),
    (["--config.train.dtype=float16"], r"config.train.dtype='float16': use one of"),
    (["--config.train.conv_impl=cudnn"], r"config.train.conv_impl='cudnn': use one of"),
    (["--config.data.batch_size=0"], r"config.data.batch_size=0: must be a positive multiple"),
    (
        ["--config.data.eval_batch_size=-1"],
        r"config.data.eval_batch_size=-1: must be a positive multiple",
    ),
    (["--config.data.augment=mixup"], r"config.data.augment='mixup': use one of"),
    (["--config.optim.name=adam"], r"config.optim.name='adam': use one of"),
    (["--config.optim.schedule=linear"], r"config.optim.schedule='linear': use one of"),
    (["--config.optim.lr=0"], r"config.optim.lr=0.0: must be > 0"),
    (["--config.optim.lr=-1"], r"config.optim.lr=-1.0: must be > 0"),
    (
        ["--config.optim.warmup_steps=400"],
        r"config.optim.warmup_steps=400: must lie in \[0, train.steps=400\)",
    ),
    (["--config.optim.momentum=1.0"], r"config.optim.momentum=1.0: must lie in \[0, 1\)"),
    (["--config.optim.beta2=1.5"], r"config.optim.beta2=1.5: must lie in \[0, 1\)"),
    (["--config.optim.weight_decay=-1"], r"config.optim.weight_decay=-1.0: must be >= 0"),
    (
        ["--config.optim.label_smoothing=1.0"],
        r"config.optim.label_smoothing=1.0: must lie in \[0, 1\)",
    ),
    (["--config.optim.grad_clip=-1"], r"config.optim.grad_clip=-1.0: must be >= 0"),
    (["--config.optim.ema=1.0"], r"config.optim.ema=1.0: is the EMA decay"),
    (
        ["--config.optim.boundaries=(100,)"],
        r"config.optim.scales=\(\): needs one factor per boundary",
    ),
    (
        ["--config.optim.boundaries=(500,)", "--config.optim.scales=(0.1,)"],
        r"config.optim.boundaries=\(500,\): must be increasing steps inside",
    ),
    (["--config.model.depth=21"], r"config.model: A CIFAR ResNet .* 6n\+2 .* got 21"),
    (["--config.model.name=vgg"], r"config.model: Unknown model 'vgg'"),
    (["--config.model.shortcut=D"], r"config.model: Unknown shortcut 'D'"),
    (["--config.model.padding=full"], r"config.model: Unknown padding mode 'full'"),
    (["--config.model.width_multiplier=0"], r"config.model: width_multiplier must be > 0"),
    (["--config.model.stem_stride=0"], r"config.model: stem_stride must be >= 1"),
    (
        [*TINY, "--config.model.stem_padding=1000"],
        r"config.model: activations need about \d+ GiB .* layer 'stem_conv' with output \[2030, "
        r"2030, 16\]",
    ),
    ([*TINY, "--config.model.stem_padding=-15"], r"config.model: Padding must be >= 0, got -15"),
    (
        ["--config.data.name=npz", "--config.data.path={root}/missing.npz"],
        r"config.data \(name='npz', path='.*missing.npz'\): no file .*missing.npz",
    ),
    (
        ["--config.data.name=npz", "--config.data.path={root}/damaged.npz"],
        r"config.data .*damaged.npz is not a readable .npz archive",
    ),
    (
        ["--config.data.name=npz", "--config.data.path={root}/nolabels.npz"],
        r"config.data .*nolabels.npz lacks \['labels'\]",
    ),
    (
        ["--config.data.name=nosuchset"],
        r"config.data \(name='nosuchset'.*unknown data set 'nosuchset'",
    ),
    (
        ["--config.data.name=npz"],
        r"config.data \(name='npz', path=None\): load\('npz'\) needs path=",
    ),
    (
        ["--config.data.auto_augment=randaugment:2:12"],
        r"config.data.auto_augment='randaugment:2:12': .* magnitude M in \[0, 10\]",
    ),
    (["--config.data.mixup=-1"], r"config.data.mixup=-1.0: must be >= 0"),
    (["--config.data.seed=-1"], r"config.data.seed=-1: must be a non-negative integer"),
    (
        [*TINY, "--config.data.batch_size=64"],
        r"config.data.batch_size=64: larger than the \d+ training examples",
    ),
    (
        ["--config.train.accumulate_steps=3"],
        r"config.train.accumulate_steps=3: .* divide train.steps=400",
    ),
    (["--config.model.drop_path_rate=1.0"], r"config.model: drop_path_rate must lie in \[0, 1\)"),
    (
        ["--config.init.reset_head=True"],
        r"config.init.reset_head=True: .* give config.init.weights too",
    ),
    (
        ["--config.init.frozen=('stem','layer1')"],
        r"config.init.frozen=\('stem', 'layer1'\): use parts of the model",
    ),
    (
        [*TINY, "--config.init.weights={root}/missing.pth"],
        r"config.init.weights=.*missing.pth: no weight file",
    ),
]


TABLE = REPO / "docs" / "errors.md"


def main_args(extra, files, workdir) -> list[str]:
    return [
        "resnet_jax.main",
        DEFAULT,
        f"--workdir={workdir}",
        *[a.format(tiny=files / "tiny.npz", root=files) for a in extra],
    ]


def table_row(args: list[str], line: str, files: Path, workdir: Path | None = None) -> str:
    """The docs/errors.md row of one case: the command and what it printed, with this run's paths
    and this machine's memory size replaced by placeholders."""

    def plain(text: str) -> str:
        if workdir is not None:
            text = text.replace(str(workdir), "WORKDIR")
        text = text.replace(str(files), "DIR")
        return re.sub(r"\d+ GiB", "N GiB", text).replace("|", "\\|")

    return f"| `python -m {plain(' '.join(args))}` | `{plain(line)}` |"


# Cases that repeat a check another case already makes through the same line of validate_config (a
# field of the same kind and rule): they run with -m slow, to keep the default run inside CI's
# budget.
SAME_RULE = {
    "--config.train.eval_every=0",
    "--config.train.log_every=0",
    "--config.train.checkpoint_every=0",
    "--config.train.keep_checkpoints=0",
    "--config.train.dtype=float16",
    "--config.train.conv_impl=cudnn",
    "--config.data.eval_batch_size=-1",
    "--config.optim.schedule=linear",
    "--config.optim.lr=-1",
    "--config.optim.beta2=1.5",
    "--config.optim.label_smoothing=1.0",
    "--config.optim.grad_clip=-1",
    "--config.model.padding=full",
    "--config.model.stem_stride=0",
    "--config.data.mixup=-1",
    "--config.data.augment=mixup",
    "--config.optim.name=adam",
    "--config.data.auto_augment=randaugment:2:12",
    "--config.model.shortcut=D",
    "--config.model.width_multiplier=0",
}


@pytest.mark.parametrize(
    "extra,message",
    [
        pytest.param(e, m, marks=pytest.mark.slow) if e[0] in SAME_RULE else (e, m)
        for e, m in MAIN_CASES
    ],
    ids=[" ".join(c[0])[-60:] for c in MAIN_CASES],
)
def test_a_bad_input_to_main_is_one_line_exit_2_and_nothing_written(
    extra, message, files, tmp_path
):
    workdir = tmp_path / "run"
    args = main_args(extra, files, workdir)
    result = command(*args)
    lines = own_lines(result.stderr)
    assert result.returncode == 2, result.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-2000:]
    assert re.search(message, lines[0]), lines[0]
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    assert not workdir.exists()  # nothing written, so nothing compiled into it either
    assert table_row(args, lines[0], files, workdir) in TABLE.read_text(), (
        "docs/errors.md is out of date: python tests/test_errors.py rewrites it"
    )


OTHER_CASES = [
    (
        ["resnet_jax.main", "--config=configs/nope.py", "--workdir={root}/w"],
        r"--config=configs/nope.py: no such config file",
    ),
    (
        ["resnet_jax.main", "--config=configs/cifar10.py:resnet21", "--workdir={root}/w"],
        r"--config=configs/cifar10.py:resnet21: .*use resnet20",
    ),
    (["resnet_jax.main", DEFAULT], r"--config and a non-empty --workdir are required"),
    (
        ["resnet_jax.main", DEFAULT, "--workdir="],
        r"--config and a non-empty --workdir are required",
    ),
    (
        ["resnet_jax.main", "--config=configs/default.py:foo", "--workdir={root}/w"],
        r"--config=configs/default.py:foo: .*this config has no variants",
    ),
    (
        ["resnet_jax.main", "--config={root}/raises.py", "--workdir={root}/w"],
        r"--config=.*raises.py: the config file raised KeyError: 'its own key'",
    ),
    (
        ["resnet_jax.main", "--config={root}/returns_none.py", "--workdir={root}/w"],
        r"--config=.*returns_none.py: its get_config returned None",
    ),
    (
        ["resnet_jax.evaluate", "--workdir={root}", "--batch_size=0"],
        r"--batch_size=0: must be >= 1",
    ),
    (["resnet_jax.summary", "--model", "resnet50", "--input", "-5"], r"--input=-5: .*positive"),
    (
        ["resnet_jax.convert", "{root}/tiny.npz", "{root}/missing/out.pth"],
        r"missing/out.pth: its folder .*missing does not exist",
    ),
    (
        ["resnet_jax.sweep", DEFAULT, "--sweep={root}/sweep_raises.py", "--workdir={root}/sw"],
        r"--sweep=.*sweep_raises.py: the sweep file raised ZeroDivisionError",
    ),
    (["resnet_jax.main", DEFAULT, "--workdir={root}/a_file"], r"--workdir=.*a_file: is a file"),
    (["resnet_jax.summary", "--model", "vgg"], r"Unknown model 'vgg'"),
    (
        ["resnet_jax.summary", "--model", "resnet18", "--input", "4", "--set", "stem_padding=0"],
        r"Layer 'stem_conv' collapses",
    ),
    (
        ["resnet_jax.convert", "{root}/missing.pth", "{root}/out.npz"],
        r"no weight file .*missing.pth",
    ),
    (
        ["resnet_jax.convert", "{root}/damaged.npz", "{root}/out.npz"],
        r"damaged.npz is not a readable .npz file",
    ),
    (
        ["resnet_jax.sweep", DEFAULT, "--sweep=configs/sweeps/nope.py", "--workdir={root}/sw"],
        r"No such file 'configs/sweeps/nope.py'",
    ),
    (
        [
            "resnet_jax.sweep",
            DEFAULT,
            "--sweep=configs/sweeps/degradation.py:bogus",
            "--workdir={root}/sw",
            "--dry_run",
        ],
        r"degradation.py:bogus: unknown option 'bogus'",
    ),
    (
        ["resnet_jax.sweep", DEFAULT, "--sweep=configs/sweeps/degradation.py"],
        r"--workdir is required",
    ),
    (["resnet_jax.evaluate", "--weights={root}/tiny.npz"], r"--weights=.*tiny.npz: needs --config"),
    (
        ["resnet_jax.convert", "{root}/checkpoints/5", "{root}/out.pth"],
        r": no config.json there; give the workdir",
    ),
]


@pytest.mark.parametrize(
    "args,message", OTHER_CASES, ids=[" ".join(c[0])[-60:] for c in OTHER_CASES]
)
def test_bad_input_to_every_command_is_one_line_and_exit_2(args, message, files):
    args = [a.format(root=files) for a in args]
    result = command(*args)
    lines = own_lines(result.stderr)
    assert result.returncode == 2, result.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-2000:]
    assert re.search(message, lines[0]), lines[0]
    assert "Traceback" not in result.stderr
    assert table_row(args, lines[0], files) in TABLE.read_text(), (
        "docs/errors.md is out of date: python tests/test_errors.py rewrites it"
    )


def test_verbose_adds_the_traceback(files, tmp_path):
    result = command(
        "resnet_jax.main", DEFAULT, f"--workdir={tmp_path}/w", "--config.train.steps=0", "--verbose"
    )
    assert result.returncode == 2 and "Traceback" in result.stderr
    assert own_lines(result.stderr)[-1].startswith("error: config.train.steps=0")


def tiny_run(files, workdir, *extra):
    return [
        "resnet_jax.main",
        DEFAULT,
        f"--workdir={workdir}",
        *[a.format(tiny=files / "tiny.npz") for a in TINY if "train.steps" not in a],
        *extra,
    ]


@pytest.mark.slow  # the default run has it in-process: tests/test_main.py, before any data is read
def test_a_collapse_to_1x1_before_the_last_stage_is_a_visible_warning(files, tmp_path):
    args = tiny_run(
        files, tmp_path / "run", "--config.train.steps=2", "--config.model.stage_strides=(1,64,64)"
    )
    result = command(*args)
    assert result.returncode == 0, result.stderr[-2000:]
    warnings = [line for line in own_lines(result.stderr) if line.startswith("warning: ")]
    assert (
        len(warnings) == 1 and "'stage2_block0/conv1' reduces the feature map to 1x1" in warnings[0]
    )


@pytest.mark.slow  # a second run of the case above, with the flag that silences its warning
def test_allow_degenerate_maps_silences_the_warning(files, tmp_path):
    quiet = command(
        *tiny_run(
            files,
            tmp_path / "quiet",
            "--config.train.steps=2",
            "--config.model.stage_strides=(1,64,64)",
            "--config.train.allow_degenerate_maps=True",
        )
    )
    assert quiet.returncode == 0 and not [
        line for line in own_lines(quiet.stderr) if line.startswith("warning: ")
    ]


def test_while_a_run_trains_its_workdir_is_locked_and_a_stop_request_saves_its_step(tmp_path):
    """The in-process twin of the test below (which starts the three processes, ~60 s): the lock is
    held while the loop runs, a stop request saves the finished step and raises Stopped, and the
    lock is free after it."""
    from tiny_run import tiny_config, write_tiny_npz

    from resnet_jax import trainer
    from resnet_jax.training.lock import WorkdirBusy, workdir_lock
    from resnet_jax.training.signals import Stopped, stop_requests

    workdir, refusals = tmp_path / "run", []

    def stop_at_step_3():  # the loop asks once per step
        try:
            with workdir_lock(workdir):
                pass
        except WorkdirBusy as busy:
            refusals.append(str(busy))
        return "SIGTERM" if len(refusals) == 3 else None

    config = tiny_config(
        write_tiny_npz(tmp_path / "tiny.npz"), train__steps=100, train__checkpoint_every=50
    )
    with pytest.raises(Stopped, match="SIGTERM after step 3; the checkpoint of that step is saved"):
        trainer.run(config, workdir, stop_at_step_3)
    assert refusals and all(
        f"pid {os.getpid()}" in r and "another run is training there" in r for r in refusals
    )
    assert "3" in os.listdir(workdir / "checkpoints")
    with workdir_lock(workdir):  # released when the run stopped
        pass
    with stop_requests() as requested:  # the handler behind `requested`, as main installs it
        assert requested() is None
        signal.raise_signal(signal.SIGTERM)
        assert requested() == "SIGTERM"


# its in-process twin above runs by default; this one adds the real processes and signal
@pytest.mark.slow
def test_a_second_run_on_a_workdir_is_refused_naming_the_first(files, tmp_path):
    workdir = tmp_path / "run"
    first = subprocess.Popen(
        [sys.executable, "-m", *tiny_run(files, workdir, "--config.train.steps=100000")],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=command_env(),
    )
    try:
        deadline = time.monotonic() + 120
        while (
            not (workdir / "config.json").exists()
            and time.monotonic() < deadline
            and first.poll() is None
        ):
            time.sleep(0.2)  # config.json is written under the lock
        second = command(*tiny_run(files, workdir))
        lines = own_lines(second.stderr)
        assert second.returncode == 1, second.stderr[-2000:]
        assert (
            len(lines) == 1
            and f"pid {first.pid}" in lines[0]
            and "another run is training there" in lines[0]
        )
        # SIGTERM: the first finishes its step, saves it, and says so (exit 3); rerunning resumes
        # from it.
        first.send_signal(signal.SIGTERM)
        _, stderr = first.communicate(timeout=120)
        assert first.returncode == 3, stderr[-2000:]
        stopped = [line for line in own_lines(stderr) if line.startswith("stopped: ")]
        assert len(stopped) == 1 and re.search(
            r"SIGTERM after step (\d+); the checkpoint of that step", stopped[0]
        )
        step = int(re.search(r"after step (\d+)", stopped[0])[1])
        assert str(step) in os.listdir(workdir / "checkpoints")
    finally:
        if first.poll() is None:
            first.kill()
    # The lock died with its process: the next run takes it over and resumes where the signal
    # stopped the first.
    resumed = command(*tiny_run(files, workdir, f"--config.train.steps={step + 2}"))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"Resuming from the checkpoint at step {step}" in resumed.stderr


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs (root only): room for one small checkpoint, not three."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
            capture_output=True,
            timeout=30,
        ).returncode
        != 0
    ):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False, timeout=30)


def test_a_full_disk_stops_the_run_at_once_with_the_last_intact_step(files, small_disk):
    start = time.monotonic()
    result = command(
        *tiny_run(
            files,
            small_disk / "run",
            "--config.train.steps=400",
            "--config.train.checkpoint_every=10",
            "--config.train.log_every=1",
            "--config.train.eval_every=1000",
        ),
        timeout=180,
    )
    lines = own_lines(result.stderr)
    assert result.returncode == 1, result.stderr[-2000:]
    assert len(lines) == 1 and "No space left on device" in lines[0], result.stderr[-3000:]
    failed, last = map(
        int,
        re.search(
            r"checkpoint of step (\d+) could not be written.*last intact checkpoint is "
            r"step (\d+)",
            lines[0],
        ).groups(),
    )
    assert last < failed and "Traceback" not in result.stderr
    # Stopped within a few steps of the failed write, not at the next save or the end.
    progress = [int(m) for m in re.findall(r"^step +(\d+)/", result.stdout, re.M)]
    assert max(progress) < failed + 10
    assert time.monotonic() - start < 150


def test_a_checkpoint_folder_turned_read_only_stops_the_run_within_seconds(files, tmp_path):
    """The folder goes read-only between two saves (a remount, as a failing disk does): no hang,
    one line."""
    workdir = tmp_path / "run"
    (workdir / "checkpoints").mkdir(parents=True)
    mount = str(workdir / "checkpoints")
    if subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=50m", "tmpfs", mount], capture_output=True, timeout=30
    ).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    run = subprocess.Popen(
        [
            sys.executable,
            "-m",
            *tiny_run(
                files,
                workdir,
                "--config.train.steps=100000",
                "--config.train.checkpoint_every=50",
                "--config.train.eval_every=100000",
            ),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=command_env(),
    )
    try:
        deadline = time.monotonic() + 120
        while not (workdir / "checkpoints" / "50").is_dir() and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(0.5)
        assert subprocess.run(["mount", "-o", "remount,ro", mount], timeout=30).returncode == 0
        turned = time.monotonic()
        _, stderr = run.communicate(timeout=90)
        assert time.monotonic() - turned < 60
    finally:
        if run.poll() is None:
            run.kill()
        subprocess.run(["umount", "-l", mount], check=False, timeout=30)
    lines = own_lines(stderr)
    assert run.returncode == 1, stderr[-2000:]
    assert (
        len(lines) == 1
        and "Read-only file system" in lines[0]
        and "last intact checkpoint is step" in lines[0]
    )
    assert "Traceback" not in stderr


def write_table(root: Path) -> None:
    """Run every case once and write docs/errors.md (python tests/test_errors.py)."""
    import tempfile

    rows = []
    for extra, _ in MAIN_CASES:
        workdir = Path(tempfile.mkdtemp()) / "run"
        args = main_args(extra, root, workdir)
        rows.append(table_row(args, own_lines(command(*args).stderr)[-1], root, workdir))
    for args, _ in OTHER_CASES:
        args = [a.format(root=root) for a in args]
        rows.append(table_row(args, own_lines(command(*args).stderr)[-1], root))
    TABLE.write_text(
        "\n".join(
            [
                "# Bad input, and what each command says",
                "",
                "Every case of `tests/test_errors.py`, run through the real commands: each prints "
                "this one line on",
                "stderr (log lines aside) and exits 2, writing nothing. DIR is a folder of test "
                "files (`tiny.npz`, a",
                "damaged `.npz`, one without labels, a plain file), WORKDIR the run's workdir, N a "
                "machine's memory.",
                "The test fails when a message here no longer matches; `python "
                "tests/test_errors.py` rewrites the table.",
                "",
                "| command | prints |",
                "| --- | --- |",
                *rows,
                "",
            ]
        )
    )


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        write_table(make_files(Path(tmp)))
