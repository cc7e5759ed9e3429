"""Every command a researcher types: `--help` only helps, and the documented tools are there."""

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import tomllib
from test_errors import command, command_env
from tiny_run import REPO

RESULTS = REPO / "experiments" / "results"
EXPERIMENTS_WORKDIR = Path("/tmp/resnet_jax_experiments")  # the experiments' default --workdir


def commands() -> list[str]:
    """Every module with a `__main__` block: the package's commands and the experiments."""
    files = sorted((REPO / "resnet_jax").glob("*.py")) + sorted((REPO / "experiments").glob("*.py"))
    return [
        f"{f.parent.name}.{f.stem}" for f in files if 'if __name__ == "__main__":' in f.read_text()
    ]


def tree_digest(root: Path) -> dict[str, tuple[str, int]]:
    """Content and modification time of every file: a rewrite with the same bytes shows too."""
    return {
        str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_help_of_every_command_and_experiment_only_helps(tmp_path):
    names = commands()
    assert {
        "resnet_jax.main",
        "resnet_jax.sweep",
        "resnet_jax.summary",
        "resnet_jax.convert",
        "resnet_jax.evaluate",
        "experiments.fc_vs_conv",
        "experiments.cifar10",
    } <= set(names)
    before, had_workdir = tree_digest(RESULTS), EXPERIMENTS_WORKDIR.exists()
    env = {**command_env(), "TMPDIR": str(tmp_path)}
    # all at once: each spends its seconds importing
    running = {
        name: subprocess.Popen(
            [sys.executable, "-m", name, "--help"],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in names
    }
    for name, process in running.items():
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, (name, err[-800:])
        # flags, or where to find them
        assert re.search(r"^usage:|--\w+", out, re.M), (
            name,
            out[:300],
        )
        assert not re.search(r"^step +\d+", out + err, re.M), name  # nothing trained
    assert tree_digest(RESULTS) == before  # no experiment rewrote its results
    assert EXPERIMENTS_WORKDIR.exists() == had_workdir
    assert [p.name for p in tmp_path.iterdir()] == []  # nor wrote anything in the temp folder


def test_the_documented_tensorboard_command_is_installed_by_the_documented_extra():
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert any(r.startswith("tensorboard>=") for r in extras["tensorboard"])
    assert "pip install -e .[tensorboard]" in (REPO / "docs" / "training.md").read_text()
    out = subprocess.run(
        ["tensorboard", "--version"],
        capture_output=True,
        text=True,
        timeout=120,
        env={
            **command_env(),
            "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""),
        },
    )
    assert out.returncode == 0 and re.match(r"\d+\.\d+", out.stdout.strip()), out.stderr[-500:]


def test_print_config_shows_the_resolved_config_and_trains_nothing(tmp_path):
    out = command(
        "resnet_jax.main",
        f"--config={REPO}/configs/default.py",
        "--config.train.steps=30",
        "--print_config",
    )
    assert out.returncode == 0, out.stderr[-500:]
    assert re.search(r"^  steps: 30$", out.stdout, re.M) and re.search(
        r"^  warmup_steps: 3$", out.stdout, re.M
    )
    bad = command(
        "resnet_jax.main",
        f"--config={REPO}/configs/default.py",
        "--config.train.steps=0",
        "--print_config",
    )
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].startswith(
        "error: config.train.steps=0"
    )

    sweep = tmp_path / "depth.py"
    sweep.write_text("def get_sweep(arg=None):\n    return {'model.depth': [8, 14]}\n")
    out = command(
        "resnet_jax.sweep",
        f"--config={REPO}/configs/default.py",
        f"--sweep={sweep}",
        "--print_config",
    )
    assert out.returncode == 0, out.stderr[-500:]
    assert re.findall(r"^  depth: (\d+)$", out.stdout, re.M) == ["8", "14"]
    assert [p.name for p in tmp_path.iterdir()] == ["depth.py"]  # no workdir, nothing ran
    sweep.write_text("def get_sweep(arg=None):\n    return {'model.deepth': [8]}\n")
    out = command(
        "resnet_jax.sweep",
        f"--config={REPO}/configs/default.py",
        f"--sweep={sweep}",
        "--print_config",
    )
    assert (
        out.returncode == 2
        and "config.model.deepth cannot be set" in out.stderr.strip().splitlines()[-1]
    )
