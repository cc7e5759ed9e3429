"""The library installs alone: its core dependencies are what resnet_jax.nn needs, and it runs with
nothing else.

The trainer's packages (TensorFlow, TFDS, orbax, ml-collections, ...) are the [train] extra, which
requirements.txt and the README's first command still install.
"""

import importlib.metadata
import re
import subprocess
import sys

import pytest
import tomllib
from tiny_run import REPO

CORE = {"jax", "flax", "numpy", "jaxtyping"}
# What a forward pass of ResNet-50 and its trace must work with: import, trace, apply.
LIBRARY_USE = (
    "import jax, jax.numpy as jnp, resnet_jax as rj\n"
    "model = rj.get_model('resnet50')\n"
    "rows = rj.trace(model, (1, 224, 224, 3))\n"
    "params, macs = rj.totals(rows)\n"
    "small = rj.get_model('cifar_resnet20')\n"
    "variables = small.init(jax.random.key(0), jnp.zeros((2, 32, 32, 3)))\n"
    "logits = small.apply(variables, jnp.ones((2, 32, 32, 3)), train=False)\n"
    "print(params, macs, logits.shape)\n"
)


def project():
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def name_of(requirement: str) -> str:
    """A requirement's distribution name, normalised (PEP 503): 'ml_collections>=1' ->
    'ml-collections'."""
    return normal(re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0])


def normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(names: set[str]) -> set[str]:
    """The installed distributions `names` pull in, themselves included (extras and markers
    ignored)."""
    seen, todo = set(), list(names)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        todo += [name_of(r) for r in requires if "extra ==" not in r]
    return seen


def test_core_dependencies_are_the_librarys_and_name_no_tensorflow():
    core = {name_of(r) for r in project()["dependencies"]}
    assert core == CORE
    assert not [r for r in project()["dependencies"] if "tensorflow" in r]
    train = {name_of(r) for r in project()["optional-dependencies"]["train"]}
    assert {"tensorflow-cpu", "tensorflow-datasets", "orbax-checkpoint", "ml-collections"} <= train


def test_the_library_runs_where_only_the_core_dependencies_are_installed():
    """Every module of the [train] extra outside the core's dependency closure is made unimportable;
    the
        library still imports, traces ResNet-50 and runs a forward pass."""
    core = closure(CORE)
    extra = {name_of(r) for r in project()["optional-dependencies"]["train"]} - core
    blocked = sorted(
        module
        for module, dists in importlib.metadata.packages_distributions().items()
        if {normal(d) for d in dists} & extra and not module.startswith("_")
    )
    assert "tensorflow" in blocked and "ml_collections" in blocked
    guard = (
        "import sys\n"
        "class Absent:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name.split('.')[0] in {blocked!r}:\n"
        "            raise ImportError(f'{name} is not a core dependency')\n"
        "sys.meta_path.insert(0, Absent())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", guard + LIBRARY_USE],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["25557032", "4089184256", "(2,", "10)"]


@pytest.mark.slow  # a fresh venv: the core pins from the registry, the package without extras
def test_a_fresh_venv_with_the_core_dependencies_runs_the_library(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = str(venv / "bin" / "python")
    pins = [
        line.split(";")[0].strip() for line in (REPO / "requirements.txt").read_text().splitlines()
    ]
    core = [p for p in pins if name_of(p) in CORE | {"jax[cpu]", "jaxlib"}]
    install = subprocess.run(
        [python, "-m", "pip", "install", "-q", *core, "-e", str(REPO)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    if install.returncode != 0 and "No matching distribution" in install.stderr + install.stdout:
        pytest.skip("the package registry is not reachable from here")
    assert install.returncode == 0, install.stderr
    listed = subprocess.run(
        [python, "-m", "pip", "list", "--format=freeze"],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout.lower()
    assert "tensorflow" not in listed and "ml-collections" not in listed
    out = subprocess.run([python, "-c", LIBRARY_USE], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["25557032", "4089184256", "(2,", "10)"]
