"""Data sets from local files, read whole into memory: .npz arrays and folders of images (or their
file names, for a folder streamed by `resnet_jax.data`).

    arrays = local.read_npz("../shared/data/mnist5k.npz", split_seed=0)   # 4,000 train / 1,000 eval
    arrays.train.images, arrays.train.labels  # uint8 [N, H, W, C], int32 [N]

A source without an eval split (one .npz file, an image folder with only train/) keeps a fixed
fraction of each
class for eval, chosen by a seeded permutation, so the split is the same on every machine.
`resnet_jax.data` turns these into batches.

`npz_shape` and `image_folder_shape` tell the image shape and class count without reading the images
(the .npz members' headers, one image's header), so a model can be checked against the data before
it loads.
"""

import contextlib
import os
import zipfile
from pathlib import Path
from typing import NamedTuple

import numpy as np
from etils import epath

DEFAULT_EVAL_FRACTION = 0.2
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
EVAL_DIRS = ("test", "validation", "val")


class Arrays(NamedTuple):
    images: np.ndarray  # uint8 [N, H, W, C]
    labels: np.ndarray  # int32 [N]


class LocalDataset(NamedTuple):
    name: str  # The file's stem or the directory's name.
    train: Arrays
    eval: Arrays
    num_classes: int


class DataShape(NamedTuple):
    """What a model needs of a data set, known before its images are read."""

    image_shape: tuple[int, int, int]  # (H, W, C) of the batches
    num_classes: int


def as_arrays(images: np.ndarray, labels: np.ndarray, source: str) -> Arrays:
    """Checks images uint8 [N, H, W] or [N, H, W, C] and integer labels [N]; gives grayscale a
    channel axis."""
    _check(images.dtype, images.shape, labels, source)
    if images.ndim == 3:
        images = images[..., None]  # [N, H, W] -> [N, H, W, 1]
    return Arrays(images, labels.astype(np.int32))


def _check(dtype: np.dtype, shape: tuple[int, ...], labels: np.ndarray, source: str) -> None:
    """Images of `dtype` and `shape` are uint8 [N, H, W(, C)] and `labels` non-negative integers
    [N]."""
    if dtype != np.uint8 or len(shape) not in (3, 4):
        raise ValueError(
            f"{source}: images are {dtype} {shape}; expected uint8 [N, H, W] or "
            "[N, H, W, C] (scale floats to 0..255 and cast to uint8)"
        )
    if (
        labels.shape != shape[:1]
        or not np.issubdtype(labels.dtype, np.integer)
        or (labels < 0).any()
    ):
        raise ValueError(
            f"{source}: labels are {labels.dtype} {labels.shape}; expected non-negative integers "
            f"[{shape[0]}], one class index per image"
        )


def _image_shape(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """[N, H, W] or [N, H, W, C] -> (H, W, C)."""
    return (*shape[1:3], shape[3] if len(shape) == 4 else 1)


def split_off_eval(arrays: Arrays, eval_fraction: float | None, seed: int) -> tuple[Arrays, Arrays]:
    """Keeps `eval_fraction` (DEFAULT_EVAL_FRACTION if None) of each class for eval, rows drawn
    with `seed`."""
    eval_fraction = DEFAULT_EVAL_FRACTION if eval_fraction is None else eval_fraction
    if not 0 < eval_fraction < 1:
        raise ValueError(f"eval_fraction={eval_fraction} must lie strictly between 0 and 1")
    rng = np.random.default_rng(seed)
    is_eval = np.zeros(len(arrays.labels), bool)
    for label in np.unique(arrays.labels):
        rows = rng.permutation(np.flatnonzero(arrays.labels == label))
        is_eval[rows[: round(eval_fraction * len(rows))]] = True
    return (
        Arrays(arrays.images[~is_eval], arrays.labels[~is_eval]),
        Arrays(arrays.images[is_eval], arrays.labels[is_eval]),
    )


def _num_classes(train: Arrays, eval_arrays: Arrays) -> int:
    return int(max(train.labels.max(initial=0), eval_arrays.labels.max(initial=0))) + 1


@contextlib.contextmanager
def _open_npz(file: epath.Path):
    """The open archive (np.load's NpzFile) of a .npz holding `images` and `labels`; errors name
    the file."""
    if not file.is_file():
        raise FileNotFoundError(
            f"no file {file}: give path= a .npz file, or a directory holding train.npz and test.npz"
        )
    how = "save it with np.savez(file, images=uint8 [N, H, W(, C)], labels=int [N])"
    try:
        with file.open("rb") as stream, np.load(stream) as arrays:
            missing = {"images", "labels"} - set(arrays.files)
            if missing:
                raise ValueError(f"{file} lacks {sorted(missing)} (it has {arrays.files}); {how}")
            yield arrays
    except (OSError, EOFError, zipfile.BadZipFile, ValueError) as error:
        if str(file) in str(error):
            raise
        # np.load reads a damaged or foreign file as pickled data, or fails inside the zip archive.
        raise ValueError(
            f"{file} is not a readable .npz archive ({type(error).__name__}); {how}"
        ) from None


def _read_npz_file(file: epath.Path) -> Arrays:
    with _open_npz(file) as arrays:
        return as_arrays(arrays["images"], arrays["labels"], str(file))


def _npz_file_shape(file: epath.Path) -> tuple[tuple[int, ...], np.ndarray]:
    """The shape of the file's images, from the header of its images.npy member (the pixels are not
    read), and its labels, checked as `as_arrays` checks them."""
    with _open_npz(file) as arrays:
        with arrays.zip.open("images.npy") as member:
            version = np.lib.format.read_magic(member)
            read_header = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            shape, _, dtype = read_header(member)
        labels = arrays["labels"]  # [N] integers: small beside the images
        _check(dtype, shape, labels, str(file))
        return shape, labels


def _npz_path(path) -> epath.Path:
    if path is None:
        raise ValueError(
            "load('npz') needs path=: a .npz file with `images` and `labels`, or a directory "
            "holding train.npz and test.npz"
        )
    return epath.Path(path if "://" in str(path) else os.path.expanduser(path))


def read_npz(path, *, split_seed: int = 0, eval_fraction: float | None = None) -> LocalDataset:
    """Reads a .npz file with `images` and `labels` (eval split off by `split_seed`), or a
    directory holding train.npz and test.npz. Local, or in a bucket (gs://...: etils.epath reads
    it)."""
    path = _npz_path(path)
    if path.is_dir():
        if eval_fraction is not None:
            raise ValueError(
                f"eval_fraction= is for a single .npz file; {path} has test.npz for eval"
            )
        train, eval_arrays = _read_npz_file(path / "train.npz"), _read_npz_file(path / "test.npz")
    else:
        train, eval_arrays = split_off_eval(_read_npz_file(path), eval_fraction, split_seed)
    return LocalDataset(path.stem, train, eval_arrays, _num_classes(train, eval_arrays))


def npz_shape(path) -> DataShape:
    """What `read_npz(path)` would hold, from the archives' headers and labels, without reading the
    images."""
    path = _npz_path(path)
    files = [path / "train.npz", path / "test.npz"] if path.is_dir() else [path]
    shapes, labels = zip(*map(_npz_file_shape, files))
    return DataShape(
        _image_shape(shapes[0]), int(max(split.max(initial=0) for split in labels)) + 1
    )


def _read_image(file: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(file) as image:
            if image.mode not in ("L", "RGB"):
                image = image.convert("RGB")
            array = np.asarray(image, np.uint8)
    except OSError as error:  # a truncated or damaged file: name it (the loader's error says where)
        raise ValueError(f"{file}: not a readable image ({error}); remove or replace it") from None
    return array[..., None] if array.ndim == 2 else array  # [H, W, C]


def _list_image_dir(directory: Path, class_names: list[str]) -> Arrays:
    """The image files under directory/<label>/ (as `images`: str [N], sorted by label then name)
    and labels."""
    unknown = sorted({d.name for d in directory.iterdir() if d.is_dir()} - set(class_names))
    if unknown:
        raise ValueError(f"{directory} has classes {unknown} that the train split lacks")
    files, labels = [], []
    for label, class_name in enumerate(class_names):
        if (directory / class_name).is_dir():
            for file in sorted((directory / class_name).iterdir()):
                if file.suffix.lower() in IMAGE_SUFFIXES:
                    files.append(str(file))
                    labels.append(label)
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {directory}/<label>/")
    return Arrays(np.asarray(files), np.asarray(labels, np.int32))


def _read_image_dir(directory: Path, class_names: list[str]) -> Arrays:
    files, labels = _list_image_dir(directory, class_names)
    images = [_read_image(Path(file)) for file in files]
    shapes = sorted({image.shape for image in images})
    if len(shapes) > 1:
        raise ValueError(
            f"images in {directory} differ in shape ({shapes[:3]}...): set data.image_size "
            "(image_size=) to stream them, cropped to that square, or resize them to one (H, W, C)"
        )
    return Arrays(np.stack(images), labels)


def _image_folder_root(path) -> Path:
    if path is None:
        raise ValueError("load('image_folder') needs path=: a directory root/train/<label>/<image>")
    root = Path(path).expanduser()
    if not (root / "train").is_dir():
        raise FileNotFoundError(
            f"no directory {root / 'train'}: image_folder expects root/train/<label>/<image> "
            "and, for eval, root/test/<label>/<image>"
        )
    return root


def _class_names(root: Path) -> list[str]:
    return sorted(d.name for d in (root / "train").iterdir() if d.is_dir())


def read_image_folder(
    path, *, split_seed: int = 0, eval_fraction: float | None = None, read=_read_image_dir
) -> LocalDataset:
    """Reads root/train/<label>/<image> and root/<one of EVAL_DIRS>/<label>/<image>; classes are
    the train split's label directories, sorted. Without an eval directory, the eval split is split
    off the train one. `list_image_folder` gives the file names instead of the pixels."""
    root = _image_folder_root(path)
    class_names = _class_names(root)
    train = read(root / "train", class_names)
    eval_dir = next((root / name for name in EVAL_DIRS if (root / name).is_dir()), None)
    if eval_dir is None:
        train, eval_arrays = split_off_eval(train, eval_fraction, split_seed)
    elif eval_fraction is not None:
        raise ValueError(
            f"eval_fraction= is for an image folder without eval split; {root} has {eval_dir.name}/"
        )
    else:
        eval_arrays = read(eval_dir, class_names)
    return LocalDataset(root.name, train, eval_arrays, len(class_names))


def list_image_folder(
    path, *, split_seed: int = 0, eval_fraction: float | None = None
) -> LocalDataset:
    """The splits of `read_image_folder` as file names (`images`: str [N]) with their labels;
    nothing decoded."""
    return read_image_folder(
        path, split_seed=split_seed, eval_fraction=eval_fraction, read=_list_image_dir
    )


def image_folder_shape(path, image_size: int | None = None) -> DataShape:
    """What `read_image_folder(path)` would hold, from the class directories and the first train
    image's header (its pixels are not decoded; `read_image_folder` checks that every image has that
    shape); with `image_size`, the square that images of any size are cropped to."""
    from PIL import Image

    root = _image_folder_root(path)
    class_names = _class_names(root)
    first = next(
        (
            file
            for name in class_names
            for file in sorted((root / "train" / name).iterdir())
            if file.suffix.lower() in IMAGE_SUFFIXES
        ),
        None,
    )
    if first is None:
        raise FileNotFoundError(
            f"no images ({', '.join(IMAGE_SUFFIXES)}) in {root / 'train'}/<label>/"
        )
    with Image.open(first) as image:  # reads the header only
        width, height = image.size
        channels = 1 if image.mode == "L" else 3  # _read_image converts every other mode to RGB
    if image_size is not None:
        height = width = image_size
    return DataShape((height, width, channels), len(class_names))
