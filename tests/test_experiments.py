"""The experiment commands start: their flags parse (experiments import each other, so a flag defined at import
time twice would stop them before they run)."""
import subprocess
import sys

import pytest

from tiny_run import REPO


@pytest.mark.parametrize("name,flag", [("degradation", "--depths"), ("stride_padding", "--depth"),
                                       ("cifar10", "--degradation_steps")])
def test_experiment_command_parses_its_flags(name, flag):
    result = subprocess.run([sys.executable, "-m", f"experiments.{name}", "--help"], cwd=REPO, capture_output=True,
                            text=True, timeout=120)
    assert "Traceback" not in result.stderr, result.stderr[-2000:]  # absl's --help itself exits with 1
    assert flag in result.stdout
