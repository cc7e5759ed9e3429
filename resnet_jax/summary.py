"""Print a model's per-layer trace as a table with totals.

    python -m resnet_jax.summary --model resnet50 --input 224
    python -m resnet_jax.summary --model cifar_resnet20 --input 32 --set stem_stride=2 --set
    padding=same
    python -m resnet_jax.summary --config=configs/cifar10.py:resnet56_fast --config.model.depth=110

With --config, the model is the one the trainer builds from that config (and its overrides), on its
data set's image shape and class count.
"""

from __future__ import annotations

import ast
import sys
import warnings
from collections.abc import Sequence

from absl import flags
from ml_collections import config_flags

from resnet_jax import errors
from resnet_jax.nn.trace import LayerRow, totals, trace


def _fmt_shape(shape: tuple) -> str:
    return "x".join(str(s) for s in shape[1:])  # drop the batch axis


def _fmt_pair(value: tuple | None) -> str:
    if value is None:
        return ""
    return str(value[0]) if len(set(value)) == 1 else "x".join(str(v) for v in value)


def _fmt_padding(pads: tuple | None) -> str:
    if pads is None:
        return ""
    return f"{pads[0][0]},{pads[0][1]}" if pads[0] == pads[1] else f"{pads[0]}|{pads[1]}"


def format_table(rows: Sequence[LayerRow], *, all_layers: bool = False) -> str:
    """A fixed-width table; BatchNorm rows are folded into the totals unless all_layers."""
    header = (
        "layer",
        "kind",
        "input",
        "output",
        "k",
        "s",
        "pad(lo,hi)",
        "params",
        "MACs",
        "RF",
        "jump",
    )
    lines = []
    for r in rows:
        if r.kind == "batch_norm" and not all_layers:
            continue
        lines.append(
            (
                r.name,
                r.kind,
                _fmt_shape(r.in_shape),
                _fmt_shape(r.out_shape),
                _fmt_pair(r.kernel),
                _fmt_pair(r.stride),
                _fmt_padding(r.padding),
                f"{r.params:,}",
                f"{r.macs:,}",
                _fmt_pair(r.receptive_field),
                _fmt_pair(r.jump),
            )
        )
    params, macs = totals(rows)
    lines.append(("total", "", "", "", "", "", "", f"{params:,}", f"{macs:,}", "", ""))
    widths = [max(len(str(row[i])) for row in [header, *lines]) for i in range(len(header))]

    def fmt(row):
        cells = enumerate(zip(row, widths))
        return "  ".join(str(v).ljust(w) if i < 4 else str(v).rjust(w) for i, (v, w) in cells)

    rule = "-" * len(fmt(header))
    return "\n".join(
        [
            fmt(header),
            rule,
            *map(fmt, lines[:-1]),
            rule,
            fmt(lines[-1]),
            f"{params / 1e6:.3f} M parameters, {macs / 1e9:.3f} GMACs ({2 * macs / 1e9:.3f} "
            "GFLOPs) per image",
        ]
    )


def parse_override(text: str) -> tuple[str, object]:
    """'stem_stride=2' -> ('stem_stride', 2); a value that is not a Python literal stays a string
    ('same')."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise errors.UserError(f"--set={text}: wants FIELD=VALUE, e.g. --set=stem_stride=2")
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value  # a bare string such as padding=same


def define_flags() -> None:
    """The command's flags (defined when it runs, so that importing this module defines none)."""
    flags.DEFINE_string(
        "model", None, "Registry name, e.g. resnet50, cifar_resnet56, cifar_plain20."
    )
    flags.DEFINE_integer(
        "input", None, "Input height = width (default 224, or 32 for cifar_ names).", lower_bound=1
    )
    flags.DEFINE_integer("channels", 3, "Input channels of --model.")
    flags.DEFINE_multi_string(
        "set", [], "FIELD=VALUE overriding a field of --model's ResNet (repeatable)."
    )
    flags.DEFINE_bool("all", False, "Also list the BatchNorm layers.")
    config_flags.DEFINE_config_file(
        "config",
        None,
        "Instead of --model: the model of a config file, on its data "
        "set's image shape, with the trainer's --config.model.FIELD=VALUE overrides.",
        lock_config=True,
    )


def model_and_shape(flag_values) -> tuple[object, tuple[int, int, int]]:
    """The model to trace and its input [H, W, C], from --config (the run's model on its data) or
    --model."""
    from resnet_jax.nn.models import get_model

    if flag_values.config is not None:
        if flag_values.model or flag_values.set:
            raise errors.UserError(
                "--config names the model: give either --config (with --config.model.FIELD=VALUE) "
                "or --model (with --set FIELD=VALUE)"
            )
        from resnet_jax import build

        # from the data set's info: nothing read
        shape, num_classes = build.data_shape(flag_values.config.data)
        if flag_values.input:
            shape = (flag_values.input, flag_values.input, shape[-1])
        return get_model(**flag_values.config.model, num_classes=num_classes), shape
    if not flag_values.model:
        raise errors.UserError(
            "no model given (--model): name one, e.g. --model=resnet50, or give --config=FILE"
        )
    size = flag_values.input or (32 if flag_values.model.startswith("cifar") else 224)
    return get_model(flag_values.model, **dict(map(parse_override, flag_values.set))), (
        size,
        size,
        flag_values.channels,
    )


def main(argv: Sequence[str]) -> None:
    errors.no_arguments(argv)
    model, shape = model_and_shape(flags.FLAGS)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rows = trace(model, (1, *shape))
    print(format_table(rows, all_layers=flags.FLAGS.all))
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)


if __name__ == "__main__":
    define_flags()
    # ShapeError included: a model its input cannot build
    errors.run_absl(main, user_errors=(ValueError,))
