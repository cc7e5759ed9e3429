"""Sweeps: grid expansion, point names and commands, the TPU launcher's queues and dry run, result
collection, and the repository's sweep files against the configs they are run with."""

import json
import subprocess
import sys

import numpy as np
import pytest
from absl import flags
from ml_collections import config_flags
from tiny_run import REPO, load_config

from resnet_jax.sweeps.grid import expand, load_function, parse_seeds, point_command, point_name
from resnet_jax.sweeps.plots import describe_budget, point_label, series, series_styles
from resnet_jax.sweeps.results import collect, read_metrics

# Each sweep file of the repository with a config it is meant for (the experiments' pairings).
REPO_SWEEPS = [
    ("degradation.py", "default.py"),
    ("degradation.py:20+56,zero_init", "mnist5k.py"),
    ("degradation.py:20+56", "cifar10.py:resnet20"),
    ("stride_padding.py", "default.py"),
    ("stride_padding.py", "mnist5k.py"),
    ("depth.py:20+56", "cifar10.py:resnet20,epochs=2"),
]


def test_grid_is_the_cartesian_product_first_axis_slowest():
    points = expand({"model.depth": [20, 56], "model.shortcut": ["none", "A"], "optim.lr": [0.1]})
    assert points == [
        {"model.depth": 20, "model.shortcut": "none", "optim.lr": 0.1},
        {"model.depth": 20, "model.shortcut": "A", "optim.lr": 0.1},
        {"model.depth": 56, "model.shortcut": "none", "optim.lr": 0.1},
        {"model.depth": 56, "model.shortcut": "A", "optim.lr": 0.1},
    ]
    explicit = [{"model.stem_stride": 1}, {"model.stem_stride": 2, "model.stem_pool": True}]
    assert expand(explicit) == explicit


@pytest.mark.parametrize(
    "bad", [{"model.depth": []}, {"model.depth": 20}, {"model.name": "resnet"}, []]
)
def test_bad_sweeps_are_rejected(bad):
    with pytest.raises(ValueError):
        expand(bad)


def test_point_names_and_commands():
    point = {"model.depth": 56, "model.stage_strides": (1, 2, 2), "optim.lr": 0.05}
    assert point_name(point) == "model.depth=56,model.stage_strides=1,2,2,optim.lr=0.05"
    assert point_command("configs/default.py", "/w/p", point) == [
        "python",
        "-m",
        "resnet_jax.main",
        "--config=configs/default.py",
        "--workdir=/w/p",
        "--config.model.depth=56",
        "--config.model.stage_strides=(1,2,2)",
        "--config.optim.lr=0.05",
    ]


def test_collect_reads_resumed_runs_once_and_writes_table_and_plots(tmp_path):
    points = expand({"model.depth": [8, 14], "model.shortcut": ["none", "A"]})
    for i, point in enumerate(points):
        directory = tmp_path / point_name(point)
        directory.mkdir()
        rows = [
            {
                "step": s,
                "train/loss": 2.0 / s + i,
                "train/accuracy": 0.1 * s,
                "train/images_per_second": 100,
            }
            for s in (1, 2, 3)
        ]
        # a resumed run repeats step 2: the later row wins
        rows.append({"step": 2, "train/loss": 9.0})
        rows.append({"step": 3, "eval/loss": 1.5, "eval/accuracy": 0.5 + i / 10})
        (directory / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
        (directory / "model_summary.json").write_text(
            json.dumps({"params": 1000 * (i + 1), "macs": 2e9})
        )
    assert read_metrics(tmp_path / point_name(points[0]) / "metrics.jsonl")[2]["train/loss"] == 9.0
    table = collect(tmp_path, points)
    assert [row["eval/accuracy"] for row in table] == [0.5, 0.6, 0.7, 0.8]
    assert table[0]["train/loss"] == pytest.approx(2.0 / 3) and table[0]["GMACs"] == 2.0
    assert (tmp_path / "results.md").read_text().count("\n") == 6
    assert (tmp_path / "curves.png").stat().st_size > 0 and (
        tmp_path / "vs_model_depth.png"
    ).exists()


# a table's None
@pytest.mark.parametrize(
    "point,label",
    [
        ({"model.shortcut": "none", "model.depth": 20}, "plain-20"),
        ({"model.shortcut": "A", "model.depth": 56}, "ResNet-56"),
        (
            {"model.shortcut": "A", "model.zero_init_last": True, "model.depth": 56},
            "ResNet-56, zero-init",
        ),
        (
            {"model.shortcut": "A", "model.zero_init_last": None, "model.depth": 56},
            "ResNet-56",
        ),
        ({"model.shortcut": "B", "model.depth": 56}, "ResNet-56, projection shortcuts (B)"),
        ({"model.shortcut": "none", "model.zero_init_last": None}, "plain"),
        ({}, "baseline"),
        ({"model.stem_stride": 2, "model.stem_pool": True}, "stem stride 2, stem max-pool"),
        ({"model.padding": "same"}, "'same' padding"),
        ({"model.stage_strides": (2, 2, 1)}, "stage strides 2/2/1"),
        (
            {"model.depth": 20, "optim.lr": 0.05, "model.zero_init_last": False},
            "depth 20, lr 0.05, no zero-init",
        ),
    ],
)
def test_point_labels_are_what_a_reader_would_say(point, label):
    assert point_label(point) == label


def test_seeds_of_a_point_form_one_series_and_styles_never_repeat():
    points = [{"model.depth": d, "train.seed": s} for d in (20, 56) for s in (0, 1, 2)]
    assert series(points) == {"depth 20": [0, 1, 2], "depth 56": [3, 4, 5]}
    for n in (3, 12, 25):
        styles = series_styles(n)
        # no colour used twice, past ten series too
        assert len({str(s["color"]) for s in styles}) == n
    assert (
        describe_budget(
            [
                {
                    "data": {"name": "npz", "path": "/d/cifar10", "batch_size": 128},
                    "optim": {"lr": 0.1},
                }
            ],
            [150, 150],
            [3, 3],
        )
        == "CIFAR-10, 150 steps of batch 128 (peak lr 0.1), 3 seeds per point"
    )
    # runs without a config.json
    assert describe_budget([{}], [300], [1]) == "300 steps, 1 seed per point"


def test_local_sweep_skips_finished_points_stops_at_a_failed_one_and_reruns_it(
    tmp_path, monkeypatch, capsys
):
    """run_local's bookkeeping with a stand-in for each point's training command (the test below
    trains)."""
    from resnet_jax.sweeps import launch

    # fails once on the second point, as an interrupted run
    def stand_in(config, workdir, overrides, python):
        script = (
            "import pathlib, sys; d = pathlib.Path(sys.argv[1]); runs = d / 'runs'; "
            "runs.write_text(runs.read_text() + 'x' if runs.exists() else 'x'); "
            "sys.exit(1 if d.name.endswith('=A') and runs.read_text() == 'x' else 0)"
        )
        return [python, "-c", script, workdir]

    monkeypatch.setattr(launch, "point_command", stand_in)
    points = expand({"model.shortcut": ["none", "A"]})
    with pytest.raises(
        SystemExit, match="Point model.shortcut=A failed \\(exit 1\\); fix it and run the same"
    ):
        launch.run_local("config.py", points, tmp_path)
    assert (
        json.loads((tmp_path / "model.shortcut=A" / "sweep_status.json").read_text())["status"]
        == "failed"
    )
    capsys.readouterr()
    directories = launch.run_local("config.py", points, tmp_path)
    assert "[1/2] model.shortcut=none: done, skipped" in capsys.readouterr().out
    # the first ran once, the second twice
    assert [(d / "runs").read_text() for d in directories] == [
        "x",
        "xx",
    ]
    statuses = [json.loads((d / "sweep_status.json").read_text()) for d in directories]
    assert [s["status"] for s in statuses] == ["done", "done"] and statuses[1]["point"] == {
        "model.shortcut": "A"
    }


# three real trainings (~75 s); the test above checks the same bookkeeping in a second
@pytest.mark.slow
def test_local_sweep_runs_each_point_skips_finished_and_resumes(tmp_path, capsys):
    from resnet_jax.sweeps.launch import run_local
    from tests.tiny_run import REPO, TINY_OVERRIDES, write_tiny_npz

    npz = write_tiny_npz(tmp_path / "tiny.npz")
    common = {
        **TINY_OVERRIDES,
        "data.path": str(npz),
        "train.steps": 4,
        "train.checkpoint_every": 2,
    }
    points = expand({"model.shortcut": ["none", "A"]})
    config = str(REPO / "configs" / "default.py")
    directories = run_local(config, points, tmp_path / "sweep", common=common)
    assert [d.name for d in directories] == ["model.shortcut=none", "model.shortcut=A"]
    for directory in directories:
        assert read_metrics(directory / "metrics.jsonl")
        assert json.loads((directory / "model_summary.json").read_text())["params"] > 0
    # Interrupted second point: its status is gone, its checkpoints remain. A rerun skips the first
    # point and resumes the second from its checkpoint at the final step instead of training again.
    (directories[1] / "sweep_status.json").unlink()
    capsys.readouterr()
    run_local(config, points, tmp_path / "sweep", common=common)
    out = capsys.readouterr().out
    assert (
        "model.shortcut=none: done, skipped" in out and f"model.shortcut=A: {sys.executable}" in out
    )
    assert json.loads((directories[1] / "sweep_status.json").read_text())["status"] == "done"
    table = collect(tmp_path / "sweep", points)
    assert [row["steps"] for row in table] == [4, 4]
    assert all(row["wall min"] > 0 for row in table)  # from the seconds each point's command took


@pytest.mark.parametrize("sweep,config", REPO_SWEEPS)
def test_repository_sweeps_override_fields_their_configs_have(sweep, config, monkeypatch):
    """Every point's overrides name existing fields, so a misspelt or missing one fails here, not
    mid-sweep."""
    get_sweep, arg = load_function(str(REPO / "configs" / "sweeps" / sweep), "get_sweep")
    path, _, config_arg = config.partition(":")
    for point in expand(get_sweep(arg)):
        # Loaded as the entry point does (locked) and overridden from its command line.
        flag_values = flags.FlagValues()
        config_flags.DEFINE_config_file(
            "config", None, "", flag_values=flag_values, lock_config=True
        )
        argv = point_command(
            f"{REPO / 'configs' / path}{':' + config_arg if config_arg else ''}", "/w", point
        )
        argv = ["main", *(a for a in argv if a.startswith("--config"))]
        monkeypatch.setattr("sys.argv", argv)  # config_flags reads the overrides from sys.argv
        flag_values(argv)
        for field, value in point.items():
            group, name = field.split(".")
            assert flag_values.config[group][name] == value


def test_degradation_sweep_dry_run_from_the_command_line(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "resnet_jax.sweep",
            "--config=configs/default.py",
            "--sweep=configs/sweeps/degradation.py",
            f"--workdir={tmp_path}",
            "--dry_run",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 8 and all(
        "-m resnet_jax.main --config=configs/default.py" in line for line in lines
    )
    assert f"--workdir={tmp_path}/model.shortcut=none,model.depth=20 " in lines[0]
    assert "--config.model.shortcut=A --config.model.depth=56" in lines[-1]


def test_seeds_are_an_axis_seed_major_with_one_directory_per_seed():
    points = expand({"model.depth": [20, 56], "seeds": [0, 1]})
    assert [point_name(p) for p in points] == [
        "model.depth=20,seed=0",
        "model.depth=56,seed=0",
        "model.depth=20,seed=1",
        "model.depth=56,seed=1",
    ]
    assert points[3] == {"model.depth": 56, "train.seed": 1, "data.seed": 1}
    assert expand([{}, {"model.stem_stride": 2}], seeds=[3])[1] == {
        "model.stem_stride": 2,
        "train.seed": 3,
        "data.seed": 3,
    }
    assert expand(
        {"model.depth": [20], "seeds": [0, 1]}, seeds=[5]
    ) == [  # --seeds replaces the file's axis
        {"model.depth": 20, "train.seed": 5, "data.seed": 5}
    ]
    for bad in ([0, 0], [-1], [1.5], [True]):
        with pytest.raises(ValueError, match="seeds="):
            expand([{}], seeds=bad)
    with pytest.raises(ValueError, match="--seeds=0,a: give integers"):
        parse_seeds(["0", "a"])


def test_collect_groups_seeds_with_intervals_that_equal_scipys(tmp_path):
    """Synthetic records of 3 points x 3 seeds: the group table's mean, std, Student-t interval and
    Welch difference are scipy.stats' on the same final accuracies, and a point far from the
    baseline is marked."""
    from scipy import stats as scipy_stats

    accuracy = {0: [0.90, 0.91, 0.92], 1: [0.905, 0.925, 0.89], 2: [0.70, 0.72, 0.71]}
    points = expand([{}, {"model.padding": "same"}, {"model.stem_stride": 2}], seeds=[0, 1, 2])
    for i, point in enumerate(points):
        directory = tmp_path / "sweep" / point_name(point)
        directory.mkdir(parents=True)
        rows = [
            {"step": 10, "train/loss": 1.0, "train/images_per_second": 50.0},
            {"step": 10, "eval/loss": 1.0, "eval/accuracy": accuracy[i % 3][i // 3]},
        ]
        (directory / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
        (directory / "model_summary.json").write_text(
            json.dumps({"params": 100, "macs": 4e7 / (1 + i % 3)})
        )
    out = tmp_path / "results"
    collect(tmp_path / "sweep", points, out=out, command="python -m resnet_jax.sweep ...")
    saved = json.loads((out / "results.json").read_text())
    assert saved["command"] == "python -m resnet_jax.sweep ..." and len(saved["runs"]) == 9
    groups = saved["groups"]
    assert [g["point"] for g in groups] == ["baseline", "'same' padding", "stem stride 2"]
    for group, values in zip(groups, accuracy.values()):
        values = np.array(values) * 100
        sem = scipy_stats.sem(values)
        low, high = scipy_stats.t.interval(0.95, len(values) - 1, loc=values.mean(), scale=sem)
        assert group["n"] == 3 and group["accuracy %"] == pytest.approx(values.mean())
        assert group["std"] == pytest.approx(values.std(ddof=1))
        assert group["95% interval"] == pytest.approx([low, high])
        welch = scipy_stats.ttest_ind(values, np.array(accuracy[0]) * 100, equal_var=False)
        ci = welch.confidence_interval(0.95)
        assert group["vs baseline"] == pytest.approx(values.mean() - 91.0)
        assert group["95% interval of difference"] == pytest.approx([ci.low, ci.high])
        assert group["p"] == pytest.approx(welch.pvalue)
    assert [g["significant"] for g in groups] == [False, False, True]
    assert groups[2]["GMACs"] == pytest.approx(4e7 / 3 / 1e9)
    table = (out / "results.md").read_text()
    assert "| stem stride 2 | 3 | 71 |" in table and table.count(" * |") == 1
    assert (out / "accuracy.png").stat().st_size > 0 and (out / "curves.png").exists()
    assert not (tmp_path / "sweep" / "results.md").exists()  # --results_dir took them


def test_a_sweep_point_that_collapses_a_map_is_refused_before_anything_runs(tmp_path):
    sweep = tmp_path / "sweep.py"
    sweep.write_text(
        "def get_sweep(arg=None):\n    return [{}, {'model.stem_kernel': 33, 'model.stem_padding': "
        "0}]\n"
    )
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "resnet_jax.sweep",
            "--config=configs/default.py",
            f"--sweep={sweep}",
            f"--workdir={tmp_path / 'w'}",
            "--seeds=0,1",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2, out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith(
        "error: sweep point model.stem_kernel=33,model.stem_padding=0,seed=0: config.model: "
        "Layer 'stem_conv' collapses its feature map to 0"
    )
    assert not (tmp_path / "w").exists()


# Every sweep file of the repository with every config whose data it fits: CIFAR-style 32x32 or
# 28x28 images.
SWEEP_FILES = ("degradation.py", "depth.py", "stride_padding.py")
CIFAR_STYLE_CONFIGS = ("default.py", "mnist5k.py", "mnist.py", "cifar10.py:resnet20_fast")
SHARED = REPO.parent / "shared" / "data"


@pytest.mark.parametrize("config", CIFAR_STYLE_CONFIGS)
@pytest.mark.parametrize("sweep", SWEEP_FILES)
def test_every_repository_sweep_builds_on_every_config_it_fits(sweep, config):
    """Each point's fields exist in the config and its model keeps a feature map on the data's
    image shape."""
    from resnet_jax.sweeps.check import check_points

    path, _, arg = config.partition(":")
    base = load_config(path, arg or None)
    get_sweep, sweep_arg = load_function(str(REPO / "configs" / "sweeps" / sweep), "get_sweep")
    shape = (28, 28, 1) if path.startswith("mnist") else (32, 32, 3)
    check_points(base, expand(get_sweep(sweep_arg), seeds=[0, 1]), shape)


@pytest.mark.slow  # ~40 one-step trainings
@pytest.mark.skipif(
    not (SHARED / "cifar10" / "test.npz").exists(),
    reason="needs ../shared/data (CIFAR-10, MNIST-5k)",
)
@pytest.mark.parametrize(
    "config,data",
    [
        ("default.py", None),
        ("mnist5k.py", "mnist5k.npz"),
        ("cifar10.py:resnet20_fast", "cifar10/test.npz"),
    ],
)
@pytest.mark.parametrize("sweep", SWEEP_FILES)
def test_every_repository_sweep_trains_one_step_per_point_on_real_data(
    sweep, config, data, tmp_path
):
    from resnet_jax.sweeps.launch import run_local

    common = {
        "train.steps": 1,
        "train.eval_every": 1,
        "train.log_every": 1,
        "train.checkpoint_every": 1,
        "optim.warmup_steps": 0,
        "data.batch_size": 16,
        "data.eval_batch_size": 16,
    }
    if data:  # a slice of the real set: its first 64 images, a quarter held out
        with np.load(SHARED / data) as arrays:
            np.savez(
                tmp_path / "slice.npz", images=arrays["images"][:64], labels=arrays["labels"][:64]
            )
        common.update({"data.path": str(tmp_path / "slice.npz"), "data.eval_fraction": 0.25})
    get_sweep, arg = load_function(str(REPO / "configs" / "sweeps" / sweep), "get_sweep")
    points = expand(get_sweep(arg))
    directories = run_local(
        str(REPO / "configs" / config), points, tmp_path / "sweep", common=common
    )
    for directory in directories:
        assert max(read_metrics(directory / "metrics.jsonl")) == 1, directory.name
