"""A sweep as data: the points of a grid, their directory names and the command that trains each.

A sweep file defines `get_sweep(arg=None)` returning either a dict of axes, {"model.depth": [20,
56],
"model.shortcut": ["none", "A"]} (their grid), or an explicit list of override dicts; `expand`
turns either into a list of points, each a dict of config overrides. Seeds are an axis of their own:
"seeds":
[0, 1, 2] in a
dict of axes (or the sweep command's --seeds) runs every point once per seed, the seed set as both
train.seed and data.seed, and a point's seeds are one group when the sweep is collected.
"""

from __future__ import annotations

import copy
import importlib.util
import itertools
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

STATUS_FILE = "sweep_status.json"
# what one seed of a point sets: the run's and the data order's
SEED_FIELDS = (
    "train.seed",
    "data.seed",
)


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


def expand(
    sweep: Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]],
    seeds: Sequence[int] | None = None,
) -> list[dict[str, Any]]:
    """Points of a sweep: the grid (cartesian product, first axis slowest) of a dict of axes, or
    the list; each once per seed where the sweep has a "seeds" axis or `seeds` is given (which
    replaces that axis)."""
    if isinstance(sweep, Mapping):
        for key, values in sweep.items():
            if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
                raise ValueError(
                    f"Sweep axis {key!r} must be a non-empty list of values, got {values!r}."
                )
        axes = {key: values for key, values in sweep.items() if key != "seeds"}
        seeds = sweep.get("seeds") if seeds is None else seeds
        keys = list(axes)
        points = [dict(zip(keys, combo)) for combo in itertools.product(*(axes[k] for k in keys))]
    else:
        points = [dict(p) for p in sweep]
    if not points:
        raise ValueError("The sweep has no points.")
    return with_seeds(points, seeds)


def with_seeds(
    points: Sequence[Mapping[str, Any]], seeds: Sequence[int] | None
) -> list[dict[str, Any]]:
    """Each point once per seed, seed-major (every point's first seed before any second one, so a
    sweep cut short has whole seeds); no seeds leave the points as they are."""
    if not seeds:
        return [dict(p) for p in points]
    if any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds) or len(
        set(seeds)
    ) < len(seeds):
        raise ValueError(
            f"seeds={list(seeds)}: give distinct non-negative integers, e.g. --seeds=0,1,2"
        )
    return [
        {**point, **{field: seed for field in SEED_FIELDS}} for seed in seeds for point in points
    ]


def parse_seeds(text: Sequence[str]) -> list[int] | None:
    """--seeds=0,1,2 (absl's list) -> [0, 1, 2]; empty -> None."""
    try:
        return [int(s) for s in text] or None
    except ValueError:
        raise ValueError(f"--seeds={','.join(text)}: give integers, e.g. --seeds=0,1,2") from None


def without_seeds(point: Mapping[str, Any]) -> dict[str, Any]:
    """The point a run belongs to: its overrides less the seed fields."""
    return {k: v for k, v in point.items() if k not in SEED_FIELDS}


def point_config(config, point: Mapping[str, Any]):
    """A copy of the (locked) ConfigDict with the point's overrides set, as the point's run
    resolves them; a field the config lacks raises ValueError naming it."""
    # references kept: a derived field (the warmup) follows the point's steps
    config = copy.deepcopy(config)
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
            raise ValueError(
                f"sweep point {dict(point)}: config.{key} cannot be set ({error}); the sweep's "
                f"fields must be the config's"
            ) from None
    return config


def point_name(point: Mapping[str, Any]) -> str:
    """A directory name that says what the point is: 'model.depth=20,model.shortcut=none'; one seed
    of it (train.seed and data.seed equal) ends in ',seed=S'."""
    fields = dict(point)
    seed = fields.get(SEED_FIELDS[0])
    if seed is not None and all(fields.get(f) == seed for f in SEED_FIELDS):
        fields = {**without_seeds(fields), "seed": seed}
    text = ",".join(f"{k}={format_value(v)}" for k, v in fields.items())
    return re.sub(r"[^A-Za-z0-9._=,+-]", "_", text) or "default"


def format_value(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, (tuple, list)) else str(value)


def point_command(
    config: str, workdir: str, point: Mapping[str, Any], python: str = "python"
) -> list[str]:
    """The command line that trains one point."""
    overrides = [f"--config.{k}={_cli_value(v)}" for k, v in point.items()]
    return [
        python,
        "-m",
        "resnet_jax.main",
        f"--config={config}",
        f"--workdir={workdir}",
        *overrides,
    ]


def _cli_value(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return "(" + ",".join(map(str, value)) + ("," if len(value) == 1 else "") + ")"
    return str(value)
