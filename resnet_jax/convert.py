"""Convert ResNet weights between torchvision's format and ours, and classify an image with them.

    # torchvision -> ours (.npz/.safetensors)
    python -m resnet_jax.convert resnet50.pth resnet50_flax.npz
    # ours -> torchvision (.pth/.safetensors/.npz)
    python -m resnet_jax.convert resnet50_flax.npz resnet50.pth
    python -m resnet_jax.convert resnet50.pth --image cat.jpg --labels imagenet_classes.txt   #
    top-5
    python -m resnet_jax.convert DIR/checkpoints/7800 out.pth  # a run's checkpoint -> torchvision
    python -m resnet_jax.convert DIR/checkpoints/7800 out.npz  # ... -> ours (.npz/.safetensors)
    python -m resnet_jax.convert resnet18.pth --image cat.jpg --config=configs/imagenet.py:resnet18
     # its model

A weight file's format is read from its keys ('conv1.weight' or 'params/stem_conv/kernel'); the
output is the other one. A run's checkpoint (or a workdir: its latest) is exported with the model of
the run's config.json, as its EMA weights when it kept them (--raw: the trained ones): to
torchvision's keys in a .pth (or with
--torchvision in any format), to ours otherwise. Our files record the padding convention the
weights were trained with (metadata 'padding').
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import jax
import numpy as np
from absl import flags
from ml_collections import config_flags

from resnet_jax import errors, interop, restore, runtime
from resnet_jax.data.pipeline import NORMALISATION
from resnet_jax.nn.models import get_model
from resnet_jax.nn.resnet import PADDING_MODES
from resnet_jax.training import evaluation

IMAGENET_MEAN, IMAGENET_STD = (np.array(v, np.float32) for v in NORMALISATION["imagenet2012"])


def preprocess(path: str | Path, resize: int = 256, crop: int = 224) -> np.ndarray:
    """Torchvision's ImageNet eval transform: shorter side to `resize`, centre crop, normalise.

    Returns [1, crop, crop, 3] float32.
    """
    from PIL import Image

    image = Image.open(path).convert("RGB")
    w, h = image.size
    scale = resize / min(w, h)
    w, h = (resize, int(h * scale)) if w <= h else (int(w * scale), resize)
    image = image.resize((w, h), Image.BILINEAR)
    left, top = int(round((w - crop) / 2.0)), int(round((h - crop) / 2.0))
    # [H, W, 3]
    pixels = np.asarray(image.crop((left, top, left + crop, top + crop)), np.float32) / 255.0
    return ((pixels - IMAGENET_MEAN) / IMAGENET_STD)[None]


def top_k(logits: np.ndarray, k: int = 5) -> list[tuple[int, float]]:
    """(class index, softmax probability) of the k largest logits of one image, best first."""
    logits = np.asarray(logits, np.float64)
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    best = np.argsort(-probs)[:k]
    return [(int(i), float(probs[i])) for i in best]


def define_flags() -> None:
    """The command's flags (defined when it runs, so that importing this module defines none)."""
    flags.DEFINE_integer(
        "depth", None, "ResNet depth of a torchvision file; inferred from the keys when left out."
    )
    flags.DEFINE_enum(
        "padding",
        interop.TORCHVISION_PADDING,
        sorted(PADDING_MODES),
        "Padding of the model used for --image (torchvision weights need 'symmetric').",
    )
    config_flags.DEFINE_config_file(
        "config",
        None,
        "Instead of --depth/--padding: the model of a config file "
        "(e.g. configs/imagenet.py:resnet18, with --config.model.FIELD=VALUE "
        "overrides), the class count taken from the weights.",
        lock_config=True,
    )
    flags.DEFINE_bool("raw", False, "A checkpoint's trained weights, not its EMA.")
    flags.DEFINE_bool(
        "torchvision",
        False,
        "Export a checkpoint with torchvision's keys whatever the output's suffix.",
    )
    flags.DEFINE_string("image", None, "Print the top-5 classes of this image.")
    flags.DEFINE_string("labels", None, "Text file with one class name per line, for --image.")


def export_checkpoint(path: Path, output: str, *, raw: bool, torchvision: bool) -> None:
    """A run's checkpoint (its EMA unless `raw`) to `output`: torchvision's keys for .pth or
    `torchvision`, else ours with the run's model and padding in the metadata."""
    workdir, step = restore.checkpoint_location(path)
    config, model, state = restore.restore_checkpoint(workdir, step)
    variables = evaluation.variables_of(state, raw=raw)
    if torchvision or Path(output).suffix.lower() in interop.TORCH_SUFFIXES:
        mismatch = interop.torchvision_mismatch(model)
        if mismatch:
            warnings.warn(
                f"{path}: the run's model is not one of torchvision's ResNets ({mismatch}): "
                f"{output} has "
                "torchvision's key names, but torchvision's ResNet will not load it or will "
                "compute "
                f"other logits."
            )
        interop.save_arrays(output, interop.to_torchvision(variables))
    else:
        weights = "raw" if state.ema is None or raw else "ema"
        interop.save_arrays(
            output,
            interop.flatten_variables(variables),
            {
                "source": f"{workdir} step {int(state.step)} ({weights})",
                "padding": model.padding,
                "model": json.dumps(config.model.to_dict()),
            },
        )
    print(f"wrote {output}")


def main(argv: Sequence[str]) -> None:
    """INPUT [OUTPUT] and the flags above."""
    runtime.setup()
    if not 2 <= len(argv) <= 3:
        raise errors.UserError(
            "give INPUT [OUTPUT]: a weight file or a run's checkpoint, and where to write the "
            "other "
            "format (see --help)"
        )
    output = Path(os.path.expanduser(argv[2])) if len(argv) == 3 else None
    if output is not None and not output.parent.is_dir():
        raise errors.UserError(
            f"{argv[2]}: its folder {output.parent} does not exist; make it or write elsewhere"
        )
    f = flags.FLAGS
    convert(
        argv[1],
        argv[2] if len(argv) == 3 else None,
        depth=f.depth,
        padding=f.padding,
        config=f.config,
        raw=f.raw,
        torchvision=f.torchvision,
        image=f.image,
        labels=f.labels,
    )


def convert(
    source: str,
    output: str | None = None,
    *,
    depth: int | None = None,
    padding: str = interop.TORCHVISION_PADDING,
    config=None,
    raw: bool = False,
    torchvision: bool = False,
    image: str | None = None,
    labels: str | None = None,
) -> None:
    """`source` (a weight file, a checkpoint or a workdir) to `output` in the other format, and/or
    the top-5 classes of `image`; the model is ResNet-`depth` with `padding`, or `config.model` when
    a config is given."""
    if output is None and image is None:
        raise errors.UserError("give an OUTPUT file, --image, or both")
    if Path(source).is_dir() or Path(source).parent.name == "checkpoints":
        if image or not output:
            raise errors.UserError(
                f"{source}: a checkpoint is exported to a file; classify an image with the "
                f"exported file"
            )
        export_checkpoint(Path(source), output, raw=raw, torchvision=torchvision)
        return
    arrays, metadata = interop.load_arrays(source)
    from_flax = interop.is_flax_format(arrays)
    if from_flax:
        variables = interop.unflatten_variables(arrays)
        state_dict = interop.to_torchvision(variables)
        trained_padding = metadata.get("padding", interop.TORCHVISION_PADDING)
    else:
        state_dict, trained_padding = arrays, interop.TORCHVISION_PADDING
    num_classes = state_dict["fc.weight"].shape[0]
    if config is not None:
        model = get_model(**config.model, num_classes=num_classes)
        depth, padding = config.model.depth, model.padding
    else:
        depth = depth or interop.infer_depth(state_dict)
        model = get_model(f"resnet{depth}", num_classes=num_classes, padding=padding)
    if not from_flax:
        # warns on padding='same'
        variables = interop.from_torchvision(state_dict, model, depth=depth)
    elif image and trained_padding != padding:
        warnings.warn(
            f"{source} records padding {trained_padding!r}, the model uses {padding!r}: "
            f"the logits will differ."
        )

    if output:
        if from_flax:
            if trained_padding != interop.TORCHVISION_PADDING:
                warnings.warn(
                    f"{source} records padding {trained_padding!r}; torchvision pads "
                    "symmetrically, "
                    f"so the exported model will compute different logits."
                )
            interop.save_arrays(output, state_dict)
        else:
            interop.save_arrays(
                output,
                interop.flatten_variables(variables),
                {"source": "torchvision", "depth": str(depth), "padding": trained_padding},
            )
        print(f"wrote {output}")
    if image:
        logits = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, preprocess(image))
        names = Path(labels).read_text().splitlines() if labels else None
        for rank, (index, prob) in enumerate(top_k(np.asarray(logits)[0]), start=1):
            name = f"  {names[index]}" if names and index < len(names) else ""
            print(f"{rank}. class {index:4d}  p={prob:.4f}{name}")


if __name__ == "__main__":
    # A missing file, or one whose keys or shapes do not fit the model (interop.StateDictError), is
    # bad input.
    define_flags()
    errors.run_absl(main, user_errors=(ValueError, OSError))
