"""Torchvision ResNet weights <-> our {'params', 'batch_stats'}, and the weight files both live in.

Names map one to one (see resnet.py): `conv1` <-> `stem_conv`, `bn1` <-> `stem_bn`, `layer2.0.conv1`
<-> `stage2_block0/conv1`, `downsample.0/1` <-> `shortcut_conv/bn`, `fc` <-> `head`; BatchNorm
`weight, bias, running_mean, running_var` <-> `scale, bias, mean, var`. Layouts change: conv OIHW
<-> HWIO, fc
[out, in] <->
[in, out]. Torchvision pads every conv and pool by (k-1)//2 on both sides, our 'symmetric' mode; on
XLA's
'same' the weights load but the logits differ (stride-2 layers on even inputs pad (0, 1), not (1,
1)).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from resnet_jax.nn.models import IMAGENET_STAGES, get_model
from resnet_jax.nn.resnet import ResNet, parse_block_name

TORCHVISION_PADDING = "symmetric"  # the padding convention torchvision weights were trained with
TORCH_SUFFIXES = (".pth", ".pt", ".bin")
BN_LEAVES = {
    ("params", "scale"): "weight",
    ("params", "bias"): "bias",
    ("batch_stats", "mean"): "running_mean",
    ("batch_stats", "var"): "running_var",
}
MODULE_NAMES = {
    "stem_conv": "conv1",
    "stem_bn": "bn1",
    "head": "fc",
    "shortcut_conv": "downsample.0",
    "shortcut_bn": "downsample.1",
}
METADATA_PREFIX = (
    "__metadata__/"  # .npz entries holding string metadata (e.g. the padding convention)
)

Variables = dict[str, Any]  # {'params': {...}, 'batch_stats': {...}}


class StateDictError(ValueError):
    """A state dict that does not fit the model: a missing or unexpected key, or a shape
    mismatch."""


def torch_module_name(module_path: Iterable[str]) -> str:
    """Our module path -> torchvision's module name: ('stage2_block0', 'shortcut_bn') ->
    'layer2.0.downsample.1'."""
    parts = []
    for name in module_path:
        block = parse_block_name(name)
        if block:
            parts.append(f"layer{block[0]}.{block[1]}")
        elif name in MODULE_NAMES:
            parts.append(MODULE_NAMES[name])
        elif re.fullmatch(r"(conv|bn)\d", name):
            parts.append(name)
        else:
            raise StateDictError(
                f"Module {'/'.join(module_path)!r} has no torchvision equivalent "
                f"(torchvision ResNets are post-activation, shortcut B)."
            )
    return ".".join(parts)


def torch_key(collection: str, path: tuple[str, ...]) -> str:
    """('params', ('stage1_block0', 'bn1', 'scale')) -> 'layer1.0.bn1.weight'."""
    *module, leaf = path
    leaf_name = "weight" if leaf == "kernel" else BN_LEAVES.get((collection, leaf))
    if leaf_name is None:
        raise StateDictError(
            f"Variable {collection}/{'/'.join(path)} has no torchvision equivalent."
        )
    return f"{torch_module_name(module)}.{leaf_name}"


def to_torch_layout(array: np.ndarray) -> np.ndarray:
    """Conv HWIO -> OIHW, dense [in, out] -> [out, in]; vectors unchanged."""
    if array.ndim == 4:
        # [KH, KW, C, K] -> [K, C, KH, KW]
        return np.ascontiguousarray(np.transpose(array, (3, 2, 0, 1)))
    return np.ascontiguousarray(array.T) if array.ndim == 2 else array


def from_torch_layout(array: np.ndarray) -> np.ndarray:
    """Conv OIHW -> HWIO, dense [out, in] -> [in, out]; vectors unchanged."""
    if array.ndim == 4:
        # [K, C, KH, KW] -> [KH, KW, C, K]
        return np.ascontiguousarray(np.transpose(array, (2, 3, 1, 0)))
    return np.ascontiguousarray(array.T) if array.ndim == 2 else array


def _torch_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    if len(shape) == 4:
        return (shape[3], shape[2], shape[0], shape[1])
    return tuple(reversed(shape)) if len(shape) == 2 else tuple(shape)


def _to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor; torch is not imported here
        value = value.detach().cpu()
        value = value.float() if str(value.dtype) == "torch.bfloat16" else value
        return value.numpy()
    return np.asarray(value)


def abstract_variables(model: ResNet, in_channels: int = 3) -> Variables:
    """The model's variables as ShapeDtypeStructs (nothing is computed)."""
    x = jnp.zeros((1, 224, 224, in_channels), jnp.float32)
    return jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))


def torchvision_keys(
    model: ResNet, in_channels: int = 3
) -> dict[str, tuple[str, tuple[str, ...], Any]]:
    """{torch key: (collection, our path, ShapeDtypeStruct)} for every variable of `model`."""
    table = {}
    variables = abstract_variables(model, in_channels)
    for collection in ("params", "batch_stats"):
        for path, leaf in traverse_util.flatten_dict(variables.get(collection, {})).items():
            table[torch_key(collection, path)] = (collection, path, leaf)
    return table


def infer_depth(keys: Iterable[str]) -> int:
    """ResNet depth (18 ... 152) from torchvision keys: blocks per `layerI` and whether blocks have
    a conv3."""
    keys = list(keys)
    blocks = [0, 0, 0, 0]
    for key in keys:
        match = re.match(r"layer([1-4])\.(\d+)\.", key)
        if match:
            stage = int(match[1]) - 1
            blocks[stage] = max(blocks[stage], int(match[2]) + 1)
    kind = "bottleneck" if any(k.endswith(".conv3.weight") for k in keys) else "basic"
    for depth, (block, stages) in IMAGENET_STAGES.items():
        if (block, tuple(stages)) == (kind, tuple(blocks)):
            return depth
    known = ", ".join(f"resnet{d}: {b} {tuple(s)}" for d, (b, s) in IMAGENET_STAGES.items())
    raise StateDictError(
        f"Cannot infer the ResNet depth: the state dict has {kind} blocks {tuple(blocks)} "
        f"in layer1..layer4; torchvision-style ResNets have {known}."
    )


def check_conventions(model: ResNet) -> None:
    """Raise for a model torchvision weights cannot describe; warn where they load but compute
    differently."""
    if model.block.startswith("preact"):
        raise StateDictError(f"Torchvision ResNets are post-activation; got block={model.block!r}.")
    differences = []
    if model.padding != TORCHVISION_PADDING or model.stem_padding is not None:
        stem = f", stem_padding={model.stem_padding!r}" if model.stem_padding is not None else ""
        differences.append(
            f"padding={model.padding!r}{stem} (torchvision pads (k-1)//2 on both sides, "
            f"padding='symmetric'); stride-2 layers on even inputs will see shifted windows "
            f"and the logits will differ"
        )
    if model.stride_in_1x1 and "bottleneck" in model.block:
        differences.append("stride_in_1x1=True (torchvision is v1.5: the stride is on the 3x3)")
    if model.bn_epsilon != 1e-5:
        differences.append(f"bn_epsilon={model.bn_epsilon} (torchvision: 1e-5)")
    if differences:
        warnings.warn(
            "Torchvision weights loaded into a model with a different convention: "
            + "; ".join(differences)
            + ".",
            stacklevel=3,
        )


def from_torchvision(
    state_dict: Mapping[str, Any], model: ResNet | None = None, *, depth: int | None = None
) -> Variables:
    """A torchvision ResNet state dict (numpy arrays or torch tensors) -> {'params', 'batch_stats'}
    of numpy.

    Without `model`, builds `get_model(f'resnet{depth}', num_classes=<rows of fc.weight>)`, the
    depth inferred
    from the keys when not given. Raises StateDictError naming any missing, unexpected or misshapen
    key.
    """
    arrays = {key: _to_numpy(value) for key, value in state_dict.items()}
    if depth is not None:
        try:
            found = infer_depth(arrays)
        except StateDictError:
            found = None  # a damaged state dict: the key check below names what is wrong
        if found is not None and found != depth:
            raise StateDictError(
                f"depth={depth} was asked, but the state dict holds a resnet{found} "
                f"({IMAGENET_STAGES[found][0]} blocks {IMAGENET_STAGES[found][1]})."
            )
    if model is None:
        depth = depth or infer_depth(arrays)
        classes = arrays["fc.weight"].shape[0] if "fc.weight" in arrays else 1000
        model = get_model(f"resnet{depth}", num_classes=classes)
    check_conventions(model)
    in_channels = arrays["conv1.weight"].shape[1] if "conv1.weight" in arrays else 3
    expected = torchvision_keys(model, in_channels)
    name = (
        f"resnet{depth}"
        if depth
        else f"model with stages {tuple(model.stage_sizes)} of {model.block} blocks"
    )

    missing = [key for key in expected if key not in arrays]
    if missing:
        shown = ", ".join(
            f"{k!r} (shape {_torch_shape(expected[k][2].shape)})" for k in missing[:5]
        )
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise StateDictError(f"Missing key(s) in the state dict for the {name}: {shown}{more}.")
    bn_modules = {key.rsplit(".", 1)[0] for key in expected if key.endswith(".running_mean")}
    unexpected = [
        key
        for key in arrays
        if key not in expected
        and not (key.endswith(".num_batches_tracked") and key.rsplit(".", 1)[0] in bn_modules)
    ]
    if unexpected:
        more = f" and {len(unexpected) - 5} more" if len(unexpected) > 5 else ""
        raise StateDictError(
            f"Unexpected key(s) in the state dict for the {name}: "
            f"{', '.join(map(repr, unexpected[:5]))}{more}."
        )

    flat: dict[tuple[str, ...], np.ndarray] = {}
    for key, (collection, path, leaf) in expected.items():
        want = _torch_shape(leaf.shape)
        if arrays[key].shape != want:
            raise StateDictError(
                f"Shape mismatch for {key!r} ({collection}/{'/'.join(path)}): expected "
                f"{want} in torch layout, found {arrays[key].shape}."
            )
        flat[(collection, *path)] = from_torch_layout(arrays[key]).astype(leaf.dtype)
    return traverse_util.unflatten_dict(flat)


ARCHITECTURE_FIELDS = (
    "widths",
    "stage_strides",
    "shortcut",
    "width_multiplier",
    "stem_features",
    "stem_kernel",
    "stem_stride",
    "stem_padding",
    "stem_pool",
    "padding",
    "stride_in_1x1",
    "bn_epsilon",
)


def torchvision_mismatch(model: ResNet) -> str | None:
    """Why torchvision's ResNet cannot load `model`'s weights or computes other logits with them;
    None when `model` is one of torchvision's ResNets (any class count)."""
    depth = next(
        (
            d
            for d, (block, stages) in IMAGENET_STAGES.items()
            if block == model.block and tuple(stages) == tuple(model.stage_sizes)
        ),
        None,
    )
    if depth is None:
        stages = tuple(model.stage_sizes)
        return f"{model.block} blocks {stages} per stage are none of torchvision's ResNets"
    reference = get_model(f"resnet{depth}", num_classes=model.num_classes)

    def value(module, field):
        item = getattr(module, field)
        return tuple(item) if isinstance(item, (list, tuple)) else item

    different = [
        f"{field}={value(model, field)!r} (resnet{depth}: {value(reference, field)!r})"
        for field in ARCHITECTURE_FIELDS
        if value(model, field) != value(reference, field)
    ]
    return ", ".join(different) or None


def to_torchvision(variables: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """{'params', 'batch_stats'} -> a torchvision state dict of numpy arrays (for
    `load_state_dict(strict=True)`).

    Each BatchNorm also gets `num_batches_tracked = 0` (int64), as torch's state dicts carry one.
    """
    state_dict = {}
    for collection in ("params", "batch_stats"):
        for path, value in traverse_util.flatten_dict(dict(variables.get(collection, {}))).items():
            key = torch_key(collection, path)
            state_dict[key] = to_torch_layout(np.asarray(value))
            if key.endswith(".running_var"):
                state_dict[key.replace(".running_var", ".num_batches_tracked")] = np.array(
                    0, np.int64
                )
    return state_dict


def num_classes_of(arrays: Mapping[str, Any]) -> int | None:
    """The classes a weight file's classifier has (either format), or None when it has none."""
    if "fc.weight" in arrays:
        return int(np.shape(arrays["fc.weight"])[0])
    if "params/head/kernel" in arrays:
        return int(np.shape(arrays["params/head/kernel"])[-1])
    return None


def variables_for(arrays: Mapping[str, Any], model: ResNet, *, in_channels: int = 3) -> Variables:
    """Weights of either format (torchvision keys, or ours flattened) -> {'params', 'batch_stats'}
    of numpy for `model` on images of `in_channels`; StateDictError names any missing, unexpected or
    misshapen key."""
    if not is_flax_format(arrays):
        arrays = flatten_variables(from_torchvision(arrays, model))
    expected = flatten_variables(abstract_variables(model, in_channels))
    missing = [key for key in expected if key not in arrays]
    if missing:
        shown = ", ".join(f"{k!r} (shape {tuple(expected[k].shape)})" for k in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise StateDictError(f"Missing key(s) in the weights for the model: {shown}{more}.")
    unexpected = [key for key in arrays if key not in expected]
    if unexpected:
        more = f" and {len(unexpected) - 5} more" if len(unexpected) > 5 else ""
        raise StateDictError(
            f"Unexpected key(s) in the weights for the model: "
            f"{', '.join(map(repr, unexpected[:5]))}{more}."
        )
    for key, leaf in expected.items():
        if np.shape(arrays[key]) != tuple(leaf.shape):
            raise StateDictError(
                f"Shape mismatch for {key!r}: expected {tuple(leaf.shape)}, found "
                f"{np.shape(arrays[key])}."
            )
    return unflatten_variables(
        {key: _to_numpy(arrays[key]).astype(leaf.dtype) for key, leaf in expected.items()}
    )


def flatten_variables(variables: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """{'params': {'stem_conv': {'kernel': a}}} -> {'params/stem_conv/kernel': a} (numpy)."""
    return {
        k: v if isinstance(v, jax.ShapeDtypeStruct) else np.asarray(v)
        for k, v in traverse_util.flatten_dict(dict(variables), sep="/").items()
    }


def unflatten_variables(arrays: Mapping[str, np.ndarray]) -> Variables:
    """Inverse of `flatten_variables`."""
    return traverse_util.unflatten_dict(dict(arrays), sep="/")


def is_flax_format(keys: Iterable[str]) -> bool:
    """True for our flattened variables ('params/...'), False for torchvision keys
    ('conv1.weight')."""
    return any(key.startswith(("params/", "batch_stats/")) for key in keys)


def load_arrays(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """(arrays, metadata) from a .pth/.pt/.bin (torch, optional), .safetensors or .npz file.

    Torch checkpoints wrapped as {'state_dict': ...} or {'model': ...}, or saved from DataParallel
    ('module.' prefixes), are unwrapped. Metadata (string pairs) comes from .safetensors and .npz
    only. A missing file raises FileNotFoundError; one that cannot be read as its suffix says,
    ValueError naming it.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no weight file {path}")
    try:
        return _load_arrays(path)
    except (ImportError, StateDictError):
        raise
    except Exception as error:  # noqa: BLE001 -- torch, safetensors and numpy each raise their own
        raise ValueError(
            f"{path} is not a readable {path.suffix or 'weight'} file "
            f"({type(error).__name__}: {' '.join(str(error).split())[:160]})"
        ) from None


def _load_arrays(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    suffix = path.suffix.lower()
    if suffix in TORCH_SUFFIXES:
        import torch  # optional dependency, only for torch's own files

        loaded = torch.load(path, map_location="cpu", weights_only=True)
        for wrapper in ("state_dict", "model"):
            if isinstance(loaded, Mapping) and isinstance(loaded.get(wrapper), Mapping):
                loaded = loaded[wrapper]
        arrays = {key.removeprefix("module."): _to_numpy(value) for key, value in loaded.items()}
        return arrays, {}
    if suffix == ".safetensors":
        from safetensors import safe_open
        from safetensors.numpy import load_file

        with safe_open(str(path), framework="np") as file:
            metadata = dict(file.metadata() or {})
        return load_file(str(path)), metadata
    if suffix == ".npz":
        with np.load(path) as file:
            entries = {key: file[key] for key in file.files}
        metadata = {
            k.removeprefix(METADATA_PREFIX): str(v)
            for k, v in entries.items()
            if k.startswith(METADATA_PREFIX)
        }
        return {k: v for k, v in entries.items() if not k.startswith(METADATA_PREFIX)}, metadata
    raise ValueError(
        f"Unknown weight file type {path.suffix!r} for {path}: use .pth/.pt/.bin, .safetensors or "
        ".npz."
    )


def save_arrays(
    path: str | Path, arrays: Mapping[str, np.ndarray], metadata: Mapping[str, str] | None = None
) -> None:
    """Write arrays to .pth/.pt (torch tensors; metadata dropped), .safetensors or .npz (with
    metadata)."""
    path = Path(path)
    suffix = path.suffix.lower()
    arrays = {key: np.ascontiguousarray(value) for key, value in arrays.items()}
    metadata = {str(k): str(v) for k, v in (metadata or {}).items()}
    if suffix in TORCH_SUFFIXES:
        import torch

        torch.save({key: torch.from_numpy(value) for key, value in arrays.items()}, path)
    elif suffix == ".safetensors":
        from safetensors.numpy import save_file

        save_file(arrays, str(path), metadata=metadata)
    elif suffix == ".npz":
        np.savez(path, **arrays, **{METADATA_PREFIX + k: np.array(v) for k, v in metadata.items()})
    else:
        raise ValueError(
            f"Unknown weight file type {path.suffix!r} for {path}: use .pth/.pt, .safetensors or "
            ".npz."
        )


def load_torchvision(
    path: str | Path, model: ResNet | None = None, *, depth: int | None = None
) -> Variables:
    """`from_torchvision` on a weight file (see `load_arrays` for the formats)."""
    return from_torchvision(load_arrays(path)[0], model, depth=depth)
