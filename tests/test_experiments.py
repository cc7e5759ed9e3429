"""The experiment commands start (their flags parse), no experiment imports another, and each
experiment's grid is its sweep file's, with the points (and so the workdir names) the published
results were made with."""

import ast
import json
import subprocess
import sys

import pytest
from tiny_run import REPO

EXPERIMENTS = sorted(p.stem for p in (REPO / "experiments").glob("*.py") if p.stem != "__init__")


@pytest.mark.parametrize(
    "name,flag",
    [
        ("cifar10", "--degradation_steps"),
    ],
)
def test_experiment_command_parses_its_flags(name, flag):
    result = subprocess.run(
        [sys.executable, "-m", f"experiments.{name}", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    # absl's --help itself exits with 1
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    assert flag in result.stdout


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiments_import_only_the_shared_helpers(name):
    tree = ast.parse((REPO / "experiments" / f"{name}.py").read_text())
    imported = {
        node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
    }
    imported |= {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    others = {m for m in imported if m.startswith("experiments.")} - {
        "experiments.common",
        "experiments.results_io",
    }
    assert not others, (
        f"experiments/{name}.py imports {others}: shared code belongs in experiments/common.py"
    )


def test_degradation_points_are_plain_then_residual_then_zero_init():
    from experiments.common import sweep_points

    points = sweep_points("degradation", "20+56,zero_init")
    assert points == [
        {"model.shortcut": "none", "model.depth": 20},
        {"model.shortcut": "none", "model.depth": 56},
        {"model.shortcut": "A", "model.depth": 20},
        {"model.shortcut": "A", "model.depth": 56},
        {"model.shortcut": "A", "model.zero_init_last": True, "model.depth": 20},
        {"model.shortcut": "A", "model.zero_init_last": True, "model.depth": 56},
    ]
    assert [p["model.depth"] for p in sweep_points("degradation")] == [20, 32, 44, 56] * 2
    with pytest.raises(ValueError, match="zero_init"):
        sweep_points("degradation", "zero_inti")


def test_stride_padding_points_change_one_thing_each_against_the_baseline():
    from experiments.common import sweep_points

    points = sweep_points("stride_padding")
    assert points[0] == {} and len(points) == 8
    assert {field for point in points for field in point} == {
        "model.stem_stride",
        "model.stem_pool",
        "model.stem_padding",
        "model.padding",
        "model.stage_strides",
    }


def _paper_record(model, seed, train_error, test_accuracy):
    return {
        "model": model,
        "params": 1,
        "config": "configs/cifar10.py:x_fast",
        "seed": seed,
        "epochs": 40.0,
        "steps": 780,
        "test_accuracy": test_accuracy,
        "test_accuracy_all": {"raw": test_accuracy},
        "final_train_error": train_error,
        "wall_minutes": 1.0,
        "git_revision": None,
        "command": "c",
    }


def test_paper_cifar10_states_each_degradation_claim_from_the_seed_means():
    from experiments.paper_cifar10 import degradation

    records = [
        _paper_record("plain20", 0, 0.05, 0.90),
        _paper_record("plain56", 0, 0.13, 0.84),
        _paper_record("resnet20", 0, 0.04, 0.917),
        _paper_record("resnet20", 1, 0.03, 0.913),
        _paper_record("resnet56", 0, 0.036, 0.93),
    ]
    lines = degradation(records)
    assert "| resnet20 | 2 | 3.50% | 8.50% |" in lines
    assert any(
        line.startswith("- (a)") and "holds (plain20 5.00%, plain56 13.00%" in line
        for line in lines
    )
    # 3.6% is above the two ResNet-20 seeds' mean of 3.5%: the claim is not made.
    assert any(
        line.startswith("- (b)") and "does not hold (resnet20 3.50%, resnet56 3.60%" in line
        for line in lines
    )
    lines = degradation(records[:3])
    assert any(
        line.startswith("- (b)") and "not measured (no resnet56 run" in line for line in lines
    )


def test_paper_cifar10_labels_an_ablation_apart_from_the_seeds_of_its_recipe(tmp_path, monkeypatch):
    from experiments import paper_cifar10

    argv = [
        "main.py",
        "--config=configs/cifar10.py:resnet20_fast",
        "--workdir=/w",
        "--config.train.seed=1",
        "--config.optim.ema=0.0",
        "--config.train.eval_every=390",
        "--config.optim.nesterov=False",
    ]
    assert paper_cifar10._recipe(argv) == (
        "configs/cifar10.py:resnet20_fast",
        ["optim.ema=0.0", "optim.nesterov=False"],
    )
    ablation = {
        **_paper_record("resnet20", 0, 0.20, 0.5),
        "config": "configs/cifar10.py:x_fast optim.ema=0.0",
        "overrides": ["optim.ema=0.0"],
    }
    baseline = [
        _paper_record("resnet20", 0, 0.04, 0.917),
        _paper_record("resnet20", 1, 0.03, 0.913),
    ]
    # The ablation's 20% train error does not enter ResNet-20's mean: it is not a seed of that
    # recipe.
    assert "| resnet20 | 2 | 3.50% | 8.50% |" in paper_cifar10.degradation(baseline + [ablation])
    monkeypatch.setattr(paper_cifar10, "RESULTS", tmp_path)
    paper_cifar10.write([ablation], "c", "levers", baseline=baseline, baseline_name="paper_cifar10")
    # the baseline's records stay theirs
    assert json.loads((tmp_path / "levers.json").read_text()) == [ablation]
    table = (tmp_path / "levers.md").read_text()
    assert "| resnet20 | `configs/cifar10.py:x_fast*` | 2 | 91.50% | 91.30% - 91.70% |" in table
    assert (
        "| resnet20 | `configs/cifar10.py:x_fast optim.ema=0.0` | 1 | 50.00% | 50.00% - 50.00% |"
        in table
    )


def test_paper_cifar10_wall_time_leaves_out_the_pause_between_a_stop_and_the_resume(tmp_path):
    from experiments.paper_cifar10 import _wall_seconds

    for start in (1000, 5000):  # started, stopped after 100 s; resumed an hour later, ran 50 s
        (tmp_path / f"events.out.tfevents.{start}.host").write_bytes(b"")
    rows = [
        {"step": 1, "time": 1040.0},
        {"step": 2, "time": 1100.0},
        {"step": 3, "time": 5030.0},
        {"step": 4, "time": 5050.0},
        {"step": 4, "eval/accuracy": 0.5},
    ]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert _wall_seconds(tmp_path) == 150.0


def test_paper_cifar10_plots_plain_and_residual_side_by_side(tmp_path, monkeypatch):
    import matplotlib.image

    from experiments import paper_cifar10

    monkeypatch.setattr(paper_cifar10, "plot_path", lambda name: tmp_path / f"{name}.png")
    workdirs, records = [], []
    for model, seed in (("plain20", 0), ("resnet20", 0), ("resnet20", 1)):
        workdir = tmp_path / f"{model}_{seed}"
        workdir.mkdir()
        rows = [{"step": s, "train/accuracy": 0.5 + s / 2000} for s in range(39, 781, 39)]
        rows += [{"step": s, "eval/accuracy": 0.5 + s / 2500} for s in (390, 780)]
        (workdir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        workdirs.append(workdir)
        records.append(_paper_record(model, seed, 0.1, 0.8))
    paper_cifar10.plot(workdirs, records)
    height, width, _ = matplotlib.image.imread(tmp_path / "paper_cifar10_curves.png").shape
    assert width > 2.5 * height  # two panels, plain and ResNet (one is 2:1)
