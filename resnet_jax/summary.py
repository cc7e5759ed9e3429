"""Print a model's per-layer trace as a table with totals.

    python -m resnet_jax.summary --model resnet50 --input 224
    python -m resnet_jax.summary --model cifar_resnet20 --input 32 --set stem_stride=2 --set padding=same
"""
from __future__ import annotations

import argparse
import ast
import sys
import warnings
from typing import Sequence

from resnet_jax.nn.models import get_model
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
    header = ("layer", "kind", "input", "output", "k", "s", "pad(lo,hi)", "params", "MACs", "RF", "jump")
    lines = []
    for r in rows:
        if r.kind == "batch_norm" and not all_layers:
            continue
        lines.append((r.name, r.kind, _fmt_shape(r.in_shape), _fmt_shape(r.out_shape), _fmt_pair(r.kernel),
                      _fmt_pair(r.stride), _fmt_padding(r.padding), f"{r.params:,}", f"{r.macs:,}",
                      _fmt_pair(r.receptive_field), _fmt_pair(r.jump)))
    params, macs = totals(rows)
    lines.append(("total", "", "", "", "", "", "", f"{params:,}", f"{macs:,}", "", ""))
    widths = [max(len(str(row[i])) for row in [header, *lines]) for i in range(len(header))]
    fmt = lambda row: "  ".join(str(v).ljust(w) if i < 4 else str(v).rjust(w)  # noqa: E731
                                for i, (v, w) in enumerate(zip(row, widths)))
    rule = "-" * len(fmt(header))
    return "\n".join([fmt(header), rule, *map(fmt, lines[:-1]), rule, fmt(lines[-1]),
                      f"{params / 1e6:.3f} M parameters, {macs / 1e9:.3f} GMACs ({2 * macs / 1e9:.3f} GFLOPs) per image"])


def _parse_override(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"--set wants FIELD=VALUE, got {text!r}")
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value  # a bare string such as padding=same


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m resnet_jax.summary", description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="registry name, e.g. resnet50, cifar_resnet56, cifar_plain20")
    parser.add_argument("--input", type=int, default=None, help="input height = width (default 224, CIFAR 32)")
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--set", type=_parse_override, action="append", default=[], metavar="FIELD=VALUE",
                        help="override a ResNet field (repeatable)")
    parser.add_argument("--all", action="store_true", help="also list BatchNorm layers")
    args = parser.parse_args(argv)

    if not args.model:
        parser.error("give --model NAME")
    size = args.input or (32 if args.model.startswith("cifar") else 224)
    try:
        model = get_model(args.model, **dict(args.set))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            rows = trace(model, (1, size, size, args.channels))
    except ValueError as error:  # ShapeError included: a bad configuration, said plainly
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(format_table(rows, all_layers=args.all))
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
