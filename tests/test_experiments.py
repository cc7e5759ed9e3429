"""The experiment commands start (their flags parse), no experiment imports another, and each experiment's grid
is its sweep file's, with the points (and so the workdir names) the published results were made with."""
import ast
import subprocess
import sys

import pytest

from tiny_run import REPO

EXPERIMENTS = sorted(p.stem for p in (REPO / "experiments").glob("*.py") if p.stem != "__init__")


@pytest.mark.parametrize("name,flag", [("degradation", "--depths"), ("stride_padding", "--depth"),
                                       ("cifar10", "--degradation_steps")])
def test_experiment_command_parses_its_flags(name, flag):
    result = subprocess.run([sys.executable, "-m", f"experiments.{name}", "--help"], cwd=REPO, capture_output=True,
                            text=True, timeout=120)
    assert "Traceback" not in result.stderr, result.stderr[-2000:]  # absl's --help itself exits with 1
    assert flag in result.stdout


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiments_import_only_the_shared_helpers(name):
    tree = ast.parse((REPO / "experiments" / f"{name}.py").read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    others = {m for m in imported if m.startswith("experiments.")} - {"experiments.common", "experiments.results_io"}
    assert not others, f"experiments/{name}.py imports {others}: shared code belongs in experiments/common.py"


def test_degradation_points_are_plain_then_residual_then_zero_init():
    from experiments.common import sweep_points
    points = sweep_points("degradation", "20+56,zero_init")
    assert points == [{"model.shortcut": "none", "model.depth": 20}, {"model.shortcut": "none", "model.depth": 56},
                      {"model.shortcut": "A", "model.depth": 20}, {"model.shortcut": "A", "model.depth": 56},
                      {"model.shortcut": "A", "model.zero_init_last": True, "model.depth": 20},
                      {"model.shortcut": "A", "model.zero_init_last": True, "model.depth": 56}]
    assert [p["model.depth"] for p in sweep_points("degradation")] == [20, 32, 44, 56] * 2
    with pytest.raises(ValueError, match="zero_init"):
        sweep_points("degradation", "zero_inti")


def test_stride_padding_points_change_one_thing_each_against_the_baseline():
    from experiments.common import sweep_points
    points = sweep_points("stride_padding")
    assert points[0] == {} and len(points) == 8
    assert {field for point in points for field in point} == {
        "model.stem_stride", "model.stem_pool", "model.stem_padding", "model.padding", "model.stage_strides"}
