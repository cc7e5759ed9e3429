"""The tree shows the layers: imports point down only, read from the source with `ast` (nothing is
imported).

nn/        pure modules: may import only nn/ (and JAX, Flax, NumPy)
data/      may import nn/ and data/
training/  may import nn/ and training/
cpu/       may import nn/ and cpu/
interop/   may import nn/ and interop/ (torchvision weights for our models)
sweeps/    may import nn/ and sweeps/ (it traces a point's model; it runs the trainer as a command,
never
           in-process)
the top level (runtime.py and the commands) may import any layer anything in resnet_jax/: never
configs/ or experiments/
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "resnet_jax"
# Third-party modules a layer may not import, beside the project's own layers.
FORBIDDEN_EXTERNAL = {
    "nn": ("absl", "ml_collections", "tensorflow", "tensorflow_datasets", "orbax", "torch")
}
# What each subpackage may import of the project (itself always).
ALLOWED_LAYERS = {
    "nn": (),
    "data": ("nn",),
    "training": ("nn",),
    "cpu": ("nn",),
    "interop": ("nn",),
    "sweeps": ("nn",),
}
NEVER = ("configs", "experiments")


def imports(source: str) -> list[tuple[int, str]]:
    """(line, module) of every import statement in `source`, absolute; relative ones as
    'resnet_jax.?'."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                # relative imports are not used in the project
                found.append((node.lineno, "resnet_jax.?"))
            elif node.module == "resnet_jax":
                found += [(node.lineno, f"resnet_jax.{alias.name}") for alias in node.names]
            else:
                found.append((node.lineno, node.module))
    return found


def violations(layer: str | None, source: str, where: str) -> list[str]:
    """The imports of one file of `layer` (None: the package's top level) that break the
    layering."""
    bad = []
    for line, module in imports(source):
        top, _, rest = module.partition(".")
        if top in NEVER:
            bad.append(
                f"{where}:{line} imports {module} (the package never imports {'/'.join(NEVER)})"
            )
        if layer is None:
            continue
        if top in FORBIDDEN_EXTERNAL.get(layer, ()):
            bad.append(f"{where}:{line} imports {module} ({layer}/ stays free of it)")
        if top == "resnet_jax":
            target = rest.partition(".")[0]
            if module == "resnet_jax.?" or (
                target != layer and target not in ALLOWED_LAYERS[layer]
            ):
                bad.append(
                    f"{where}:{line} imports {module} ({layer}/ may import only "
                    f"{', '.join((layer, *ALLOWED_LAYERS[layer]))})"
                )
    return bad


def package_files():
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).parts
        layer = parts[0] if len(parts) > 1 else None
        yield layer, path


def test_imports_point_down_the_layers():
    bad = []
    for layer, path in package_files():
        bad += violations(layer, path.read_text(), str(path.relative_to(PACKAGE.parent)))
    assert not bad, "\n".join(bad)
    # the scan saw every layer
    assert {layer for layer, _ in package_files()} >= set(ALLOWED_LAYERS)


def test_nothing_in_the_package_imports_configs_or_experiments():
    bad = []
    for _, path in package_files():
        bad += [m for _, m in imports(path.read_text()) if m.split(".")[0] in NEVER]
    assert not bad


@pytest.mark.parametrize(
    "layer,planted,why",
    [
        ("nn", "from resnet_jax.training import train\n", "nn/ may import only nn"),
        ("nn", "from resnet_jax.cpu import onednn\n", "nn/ may import only nn"),
        ("nn", "import resnet_jax.data.pipeline\n", "nn/ may import only nn"),
        ("nn", "from absl import flags\n", "stays free of it"),
        ("nn", "import ml_collections\n", "stays free of it"),
        ("nn", "from resnet_jax import runtime\n", "nn/ may import only nn"),
        ("data", "from resnet_jax.training import checkpoint\n", "data/ may import only data, nn"),
        ("cpu", "from resnet_jax.data import augment\n", "cpu/ may import only cpu, nn"),
        (None, "from configs import default\n", "never imports configs"),
        (None, "    import experiments.degradation\n", "never imports"),
    ],
)
def test_a_planted_upward_import_is_caught(layer, planted, why):
    source = "import jax\n\n\ndef f():\n" + (
        planted if planted.startswith(" ") else "    " + planted
    )
    found = violations(layer, source, "planted.py")
    assert len(found) == 1 and why in found[0], found
    assert not violations(layer, "import jax\nfrom resnet_jax.nn.conv import conv2d\n", "clean.py")


def test_importing_the_research_api_loads_no_trainer_data_or_backend():
    import subprocess
    import sys

    code = (
        "import sys, resnet_jax as rj; rj.get_model('cifar_resnet20'); "
        "print(sorted({m.split('.')[1] for m in sys.modules if m.startswith('resnet_jax.')}), "
        "'tensorflow' in sys.modules, 'orbax' in sys.modules, 'ml_collections' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=PACKAGE.parent,
        timeout=120,
    ).stdout.strip()
    assert out == "['nn'] False False False"
