"""No test can wait forever: every child process the tests (and the package) start is waited on
with a deadline, read from the source with `ast`; pytest-timeout bounds each test as a whole
(pyproject.toml)."""

import ast
from pathlib import Path

import pytest
from tiny_run import REPO

WAITS = {"run", "check_output", "check_call", "call", "communicate"}
# The local sweep waits for each point's training, which has no deadline of its own; the tests that
# call it are bounded by pytest-timeout.
UNBOUNDED = REPO / "resnet_jax" / "sweeps" / "launch.py"


def unbounded_waits(source: str) -> list[int]:
    """Lines of subprocess.run/check_output/check_call/call and Popen.communicate calls without a
    timeout= keyword."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        name, owner = node.func.attr, node.func.value
        is_subprocess = isinstance(owner, ast.Name) and owner.id == "subprocess"
        if (name == "communicate" or (is_subprocess and name in WAITS)) and not any(
            k.arg == "timeout" or k.arg is None for k in node.keywords
        ):
            lines.append(node.lineno)
    return lines


@pytest.mark.parametrize("folder", ["tests", "resnet_jax", "experiments"])
def test_every_wait_on_a_child_process_has_a_deadline(folder):
    found = [
        f"{path.relative_to(REPO)}:{line}"
        for path in sorted((REPO / folder).rglob("*.py"))
        if path != UNBOUNDED
        for line in unbounded_waits(path.read_text())
    ]
    assert not found, "waits without timeout=: " + ", ".join(found)


def test_the_scan_catches_a_wait_without_a_deadline():
    assert unbounded_waits("import subprocess\nsubprocess.run(['true'])\n") == [2]
    assert unbounded_waits("p.communicate()\np.communicate(timeout=5)\n") == [1]
    assert unbounded_waits("subprocess.run(['true'], timeout=9)\n") == []


def test_the_suite_has_a_per_test_time_limit():
    text = Path(REPO / "pyproject.toml").read_text()
    assert "timeout = " in text and "pytest-timeout" in (REPO / "requirements-test.txt").read_text()
