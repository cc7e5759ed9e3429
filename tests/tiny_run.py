"""A run small enough for tests: a 96-image 8x8 data set in a .npz and a depth-8, quarter-width
ResNet config."""

import importlib.util
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def write_tiny_npz(path: Path) -> Path:
    """96 uint8 images [8, 8, 3] of 4 classes; class k lights up rows 2k and 2k+1, so it can be
    learnt."""
    rng = np.random.default_rng(0)
    labels = np.arange(96) % 4
    images = rng.integers(0, 60, (96, 8, 8, 3)).astype(np.uint8)
    for i, label in enumerate(labels):
        images[i, 2 * label : 2 * label + 2] = 255
    np.savez(path, images=images, labels=labels)
    return path


def write_pixelless_npz(path: Path, images_shape=(96, 8, 8, 3), num_classes: int = 4) -> Path:
    """A .npz whose images.npy member has a valid header but no pixels after it (np.load of it
    fails), and whose labels are whole: what only a reader of headers can use."""
    import io
    import zipfile

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "|u1", "fortran_order": False, "shape": images_shape}
    )
    labels = io.BytesIO()
    np.save(labels, np.arange(images_shape[0]) % num_classes)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("images.npy", header.getvalue())  # the header (magic included), no pixels
        archive.writestr("labels.npy", labels.getvalue())
    return path


def load_config(name: str = "default.py", arg: str | None = None):
    """configs/<name>'s get_config(arg), loaded from its file as the entry point does."""
    spec = importlib.util.spec_from_file_location(f"config_{name[:-3]}", REPO / "configs" / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg) if arg is not None else module.get_config()


TINY_OVERRIDES = {
    "model.depth": 8,
    "model.width_multiplier": 0.25,
    "data.name": "npz",
    "data.eval_fraction": 0.25,
    "data.batch_size": 8,
    "data.eval_batch_size": 8,
    "optim.warmup_steps": 0,
    "optim.lr": 0.1,
    "train.steps": 6,
    "train.log_every": 2,
    "train.eval_every": 3,
    "train.checkpoint_every": 3,
}


def tiny_config(npz: Path, **overrides):
    """configs/default.py shrunk to seconds on CPU; overrides as {'train.steps': 10} or
    train__steps=10."""
    config = load_config()
    values = {
        **TINY_OVERRIDES,
        "data.path": str(npz),
        **{k.replace("__", "."): v for k, v in overrides.items()},
    }
    for field, value in values.items():
        group, name = field.split(".")
        config[group][name] = value
    return config


def command_line(npz: Path, **overrides) -> list[str]:
    """The same run as flags of the entry point."""
    values = {
        **TINY_OVERRIDES,
        "data.path": str(npz),
        **{k.replace("__", "."): v for k, v in overrides.items()},
    }
    return [f"--config={REPO / 'configs' / 'default.py'}"] + [
        f"--config.{k}={v}" for k, v in values.items()
    ]


def wait_for_line(process, done, timeout: float) -> bool:
    """Whether the child printed a stdout line for which done(line) holds within `timeout` seconds,
    counted whether or not it prints: a thread reads (and keeps draining, so the child never blocks
    on a full pipe) while this waits on an event with a deadline."""
    import threading

    found = threading.Event()

    def read():
        for line in process.stdout:
            if not found.is_set() and done(line):
                found.set()

    threading.Thread(target=read, daemon=True).start()
    return found.wait(timeout)
