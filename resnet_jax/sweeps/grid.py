"""A sweep as data: the points of a grid, their directory names and the command that trains each.

A sweep file defines `get_sweep(arg=None)` returning either a dict of axes, {"model.depth": [20, 56],
"model.shortcut": ["none", "A"]} (their grid), or an explicit list of override dicts; `expand` turns either
into a list of points, each a dict of config overrides.
"""
from __future__ import annotations

import copy
import importlib.util
import itertools
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

STATUS_FILE = "sweep_status.json"


def load_function(spec: str, name: str):
    """`path/file.py[:arg]` -> (the file's function `name`, arg or None)."""
    path, _, arg = spec.partition(":")
    if not Path(path).is_file():
        raise FileNotFoundError(f"No such file {path!r} (from {spec!r}).")
    module_spec = importlib.util.spec_from_file_location(Path(path).stem, path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    if not hasattr(module, name):
        raise ValueError(f"{path} defines no {name}(arg=None) function.")
    return getattr(module, name), (arg or None)


def expand(sweep: Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Points of a sweep: the grid (cartesian product, first axis slowest) of a dict of axes, or the list."""
    if isinstance(sweep, Mapping):
        for key, values in sweep.items():
            if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
                raise ValueError(f"Sweep axis {key!r} must be a non-empty list of values, got {values!r}.")
        keys = list(sweep)
        return [dict(zip(keys, combo)) for combo in itertools.product(*(sweep[k] for k in keys))]
    points = [dict(p) for p in sweep]
    if not points:
        raise ValueError("The sweep has no points.")
    return points


def point_config(config, point: Mapping[str, Any]):
    """A copy of the (locked) ConfigDict with the point's overrides set, as the point's run resolves them; a
    field the config lacks raises ValueError naming it."""
    config = copy.deepcopy(config)  # references kept: a derived field (the warmup) follows the point's steps
    config.lock()
    for key, value in point.items():
        *groups, field = key.split(".")
        node = config
        try:
            for group in groups:
                node = node[group]
            if field not in node:
                raise KeyError(field)
            node[field] = value
        except (KeyError, AttributeError, TypeError) as error:
            raise ValueError(f"sweep point {dict(point)}: config.{key} cannot be set ({error}); the sweep's "
                             f"fields must be the config's") from None
    return config


def point_name(point: Mapping[str, Any]) -> str:
    """A directory name that says what the point is: 'model.depth=20,model.shortcut=none'."""
    text = ",".join(f"{k}={format_value(v)}" for k, v in point.items())
    return re.sub(r"[^A-Za-z0-9._=,+-]", "_", text) or "default"


def format_value(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, (tuple, list)) else str(value)


def point_command(config: str, workdir: str, point: Mapping[str, Any], python: str = "python") -> list[str]:
    """The command line that trains one point."""
    overrides = [f"--config.{k}={_cli_value(v)}" for k, v in point.items()]
    return [python, "-m", "resnet_jax.main", f"--config={config}", f"--workdir={workdir}", *overrides]


def _cli_value(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return "(" + ",".join(map(str, value)) + ("," if len(value) == 1 else "") + ")"
    return str(value)
