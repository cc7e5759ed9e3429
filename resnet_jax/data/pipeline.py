"""Input pipelines: a data set by name in, dicts of NumPy batches out, the same batches for the
same seed.

    # or "cifar10", "mnist", ...; "npz" or "image_folder" with path=
    dataset = data.load("shapes32")
    dataset.info  # DatasetInfo(name, num_classes, image_shape, num_train, num_eval, ...)
    data.shape_of("shapes32")         # DataShape(image_shape=(32, 32, 3), num_classes=10), nothing
    read for batch in data.train_batches(dataset, batch_size=128, seed=0, augment="cifar",
    start_step=0):
        batch["image"], batch["label"]  # float32 [N, H, W, C] normalised, int32 [N]
    for batch in data.eval_batches(dataset, batch_size=500):
        batch["mask"]                   # bool [N]: False on the padding of the last batch

Train batches are a pure function of (dataset, batch_size, seed, augment, step): epoch e is a
permutation of this process's examples drawn from (seed, e), cut into whole batches (the partial one
is dropped), and each example's crop and flip come from (seed, e, process, position), so
`start_step=k` yields exactly the batches k, k+1, ... of an uninterrupted run. `batch_size` is per
process; process p reads its own shard of every split. Eval visits each example of the split exactly
once over all processes, every process the same number of batches.

Nothing here touches the network: TFDS data sets are read from `data_dir` where they are prepared,
or prepared offline from the source files in `manual_dir`; shapes32 (the project's own, see
shapes32.py) is generated. TF is imported on first use, with its GPUs hidden (tensorflow_cpu.py).
"""

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import jax
import numpy as np
import tensorflow_datasets as tfds  # Cheap: TFDS imports TensorFlow only when first used.

from resnet_jax.data import local, shapes32  # shapes32 registers its TFDS builder.
from resnet_jax.data.local import DataShape
from resnet_jax.data.tensorflow_cpu import as_written, tensorflow

# Per-channel (mean, std) of the train images scaled to [0, 1]; other data sets get theirs computed
# on load.
NORMALISATION = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "mnist": ((0.1307,), (0.3081,)),
    "fashion_mnist": ((0.2860,), (0.3530,)),
    "imagenet2012": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}
DEFAULT_IMAGE_SIZE = 224  # Side of the batches of data sets whose images vary in size (ImageNet).
MAX_IN_MEMORY_BYTES = 4 * 2**30  # Larger TFDS train splits are streamed from disk instead.
SHUFFLE_BUFFER = 16_384  # Examples, for streamed splits (in-memory ones are permuted whole).
AUGMENTATIONS = ("none", "cifar", "imagenet")  # What train_batches' augment= takes; see augment.py.
AUTO_AUGMENTATIONS = (
    "none",
    "trivialaugment",
    "randaugment",
)  # What train_batches' auto_augment= takes.
STATS_EXAMPLES = (
    1_000  # Streamed sets missing from NORMALISATION are normalised with these examples' stats.
)


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What a model and a trainer need to know of a data set."""

    name: str
    num_classes: int
    image_shape: tuple[int, int, int]  # (H, W, C) of the batches.
    num_train: int
    num_eval: int
    # Per channel, of train images in [0, 1]: what batches are normalised by.
    mean: tuple[float, ...] = (0.5,)
    std: tuple[float, ...] = (0.5,)


def _stream_rows(length: int, shard, order_seed) -> np.ndarray:
    """Rows p::P of a split of `length` examples (this process's shard), permuted by `order_seed`
    when given."""
    rows = np.arange(length)[shard[0] :: shard[1]]
    return rows if order_seed is None else np.random.default_rng(order_seed).permutation(rows)


@dataclasses.dataclass(frozen=True, eq=False)
class ArraySplit:
    """A split held in memory."""

    images: np.ndarray  # uint8 [N, H, W, C]
    labels: np.ndarray  # int32 [N]

    def __len__(self) -> int:
        return len(self.labels)

    def read(self, shard, *, order_seed=None, start=0, stop=None):
        """Examples [start, stop) of this process's stream as tf.data of (uint8 [H, W, C], int32
        []): rows p::P
        of the split, permuted by `order_seed` when given."""
        tf = tensorflow()
        rows = _stream_rows(len(self), shard, order_seed)[start:stop]
        images, labels = tf.constant(self.images), tf.constant(self.labels)
        return tf.data.Dataset.from_tensor_slices(rows).map(
            as_written(lambda row: (tf.gather(images, row), tf.gather(labels, row)))
        )


@dataclasses.dataclass(frozen=True, eq=False)
class FileSplit:
    """A split of image files streamed from disk, decoded as read: an image folder of varying image
    sizes."""

    files: np.ndarray  # str [N]
    labels: np.ndarray  # int32 [N]
    channels: int  # what every image is decoded to (grey 1, else RGB 3)

    def __len__(self) -> int:
        return len(self.labels)

    def read(self, shard, *, order_seed=None, start=0, stop=None):
        """Like ArraySplit.read (the same rows in the same order), each image decoded from its
        file."""
        tf = tensorflow()
        rows = _stream_rows(len(self), shard, order_seed)[start:stop]

        def decode(file, label):
            image = tf.io.decode_image(
                tf.io.read_file(file), channels=self.channels, expand_animations=False
            )
            return tf.ensure_shape(image, (None, None, self.channels)), label

        return tf.data.Dataset.from_tensor_slices((self.files[rows], self.labels[rows])).map(
            as_written(decode), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
        )


@dataclasses.dataclass(frozen=True, eq=False)
class TfdsSplit:
    """A split streamed from prepared TFDS files: for data sets too large for memory, or of varying
    image size."""

    builder: tfds.core.DatasetBuilder
    split: str

    def __len__(self) -> int:
        return self.builder.info.splits[self.split].num_examples

    def read(self, shard, *, order_seed=None, start=0, stop=None):
        """Like ArraySplit.read; the shard is tfds.even_splits' p-th of P, shuffled (file order,
        then a buffer) by `order_seed` when given. Images are decoded after the skip to `start`,
        which is cheap."""
        tf = tensorflow()
        shuffled = order_seed is not None
        examples = self.builder.as_dataset(
            split=tfds.even_splits(self.split, shard[1])[shard[0]],
            shuffle_files=shuffled,
            decoders={"image": tfds.decode.SkipDecoding()},
            read_config=tfds.ReadConfig(shuffle_seed=order_seed, try_autocache=False),
        )
        if shuffled:
            examples = examples.shuffle(SHUFFLE_BUFFER, seed=order_seed)
        examples = examples.take(-1 if stop is None else stop).skip(start)
        decode = self.builder.info.features["image"].decode_example
        return examples.map(
            as_written(lambda ex: (decode(ex["image"]), tf.cast(ex["label"], tf.int32)))
        )


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """What `load` returns: the info and the two splits; `train_batches` and `eval_batches` read
    it."""

    info: DatasetInfo
    train: ArraySplit | TfdsSplit | FileSplit
    eval: ArraySplit | TfdsSplit | FileSplit
    varying_size: bool = (
        False  # Images differ in size: centre-cropped to info.image_shape unless augmented.
    )


def load(
    name: str,
    *,
    data_dir=None,
    manual_dir=None,
    path=None,
    split_seed: int = 0,
    eval_fraction: float | None = None,
    image_size: int | None = None,
    in_memory: bool | None = None,
) -> Dataset:
    """Loads a data set for `train_batches` and `eval_batches`, never downloading.

    Args:
      name: "shapes32" (or "shapes32/small"), the project's generated set; "npz" with `path` a .npz
      file holding
        `images` uint8 [N, H, W] or [N, H, W, C] and `labels` [N], or a directory with train.npz
        and test.npz;
        "image_folder" with `path` a directory root/train/<label>/<image>, plus root/test (or
        validation, val): read into memory, or, with `image_size`, streamed from the files and
        cropped to that square (images of any size); or any TFDS image classification name
        ("cifar10", "mnist", "imagenet2012", ...).
      data_dir: where TFDS data sets (shapes32 too) are prepared; TFDS's default,
      ~/tensorflow_datasets, if None. manual_dir: a directory with a TFDS data set's source files
      (for mnist the four official .gz archives),
        to prepare it offline into `data_dir` when it is not prepared yet.
      split_seed, eval_fraction: a source with no eval split (one .npz file, an image folder with
      only train/)
        keeps `eval_fraction` (0.2 when None) of each class for eval, chosen by `split_seed`.
      image_size: side of the batches for data sets whose images vary in size (DEFAULT_IMAGE_SIZE
      when None);
        for an image folder, the request to stream it (its images may then differ in size).
      in_memory: hold a TFDS data set in memory (True) or stream it from disk (False); None picks
      by size.
    """
    if name == "image_folder" and image_size is not None:
        return _stream_image_folder(
            path, split_seed=split_seed, eval_fraction=eval_fraction, size=image_size
        )
    if name in ("npz", "image_folder"):
        read = local.read_npz if name == "npz" else local.read_image_folder
        files = read(path, split_seed=split_seed, eval_fraction=eval_fraction)
        return _from_arrays(
            files.name, ArraySplit(*files.train), ArraySplit(*files.eval), files.num_classes
        )
    if path is not None:
        raise ValueError(
            f"path= is for 'npz' and 'image_folder', not for the TFDS data set {name!r}; "
            "give TFDS data sets data_dir= (and manual_dir= to prepare one offline)"
        )
    if eval_fraction is not None:
        raise ValueError(f"eval_fraction= is for sources without an eval split; {name!r} has one")
    return _load_tfds(
        name, data_dir=data_dir, manual_dir=manual_dir, image_size=image_size, in_memory=in_memory
    )


def shape_of(name: str, *, data_dir=None, path=None, image_size: int | None = None) -> DataShape:
    """The image shape of the batches and the class count that `load` with these arguments gives,
    from the
    data set's info alone: TFDS's features, the .npz headers (and labels), an image folder's class
    directories and first image header. No image is read and nothing is prepared, so a model can be
    checked first.

    Raises what `load` raises for a wrong name, path or file.
    """
    if name == "npz":
        return local.npz_shape(path)
    if name == "image_folder":
        return local.image_folder_shape(path, image_size)
    features = _tfds_builder(name, data_dir=data_dir).info.features
    h, w, c = features["image"].shape
    if h is None or w is None:  # varying in size: cropped to image_size
        h = w = image_size or DEFAULT_IMAGE_SIZE
    elif image_size is not None and image_size != h:
        raise ValueError(
            f"image_size={image_size} is for data sets of varying image size; {name!r} images are "
            f"{h}x{w}"
        )
    return DataShape((h, w, c), features["label"].num_classes)


def train_batches(
    dataset: Dataset,
    *,
    batch_size: int,
    seed: int,
    augment: str,
    start_step: int = 0,
    process_index: int | None = None,
    process_count: int | None = None,
    cutout: int = 0,
    auto_augment: str = "none",
) -> Iterator[dict]:
    """Returns an endless iterator of train batches from step `start_step` on; the module docstring
    gives the order.

    Args:
      batch_size: examples per batch on this process. augment: "none", "cifar" (pad 4, random crop,
      flip) or "imagenet" (Inception crop, flip). cutout: side of the square Cutout zeroes in each
      normalised image; 0 is off. auto_augment: "none", "trivialaugment" (one random op at a
      random magnitude, after `augment`) or "randaugment[:N:M]" (N random ops at magnitude M).
      process_index, process_count: this process's shard (jax.process_index() and
      jax.process_count() if None).
    Yields:
      {"image": float32 [batch_size, H, W, C] normalised, "label": int32 [batch_size]}.
    """
    _check_batch_size(batch_size)
    if augment not in AUGMENTATIONS:
        raise ValueError(f"augment={augment!r} is not one of {AUGMENTATIONS}")
    from resnet_jax.data.augment import parse_auto_augment

    try:
        auto_kind, auto_ops, auto_magnitude = parse_auto_augment(auto_augment)
    except ValueError as error:
        raise ValueError(f"auto_augment={auto_augment!r}: {error}") from None
    if start_step < 0:
        raise ValueError(f"start_step={start_step} must be >= 0")
    shard = _shard(process_index, process_count)
    steps_per_epoch = dataset.info.num_train // shard[1] // batch_size
    if steps_per_epoch == 0:
        raise ValueError(
            f"batch_size={batch_size} on each of {shard[1]} processes exceeds the "
            f"{dataset.info.num_train} train examples of {dataset.info.name}: use a smaller batch"
        )
    return _train_stream(
        dataset,
        batch_size=batch_size,
        seed=seed,
        augment=augment,
        start_step=start_step,
        shard=shard,
        steps_per_epoch=steps_per_epoch,
        cutout=cutout,
        auto_augment=(auto_kind, auto_ops, auto_magnitude),
    )


def _train_stream(
    dataset: Dataset,
    *,
    batch_size,
    seed,
    augment,
    start_step,
    shard,
    steps_per_epoch,
    cutout,
    auto_augment,
):
    tf = tensorflow()
    from resnet_jax.data import augment as augment_lib

    size = dataset.info.image_shape[0]

    def view(image, example_seed):  # [h, w, C] -> [H, W, C]
        if augment == "imagenet":
            return augment_lib.inception_crop(image, example_seed, size=size)
        if dataset.varying_size:
            image = augment_lib.centre_crop(image, size=size)
        if augment == "cifar":
            image = augment_lib.pad_crop_flip(image, example_seed)
        return image

    epoch, first_step = divmod(start_step, steps_per_epoch)
    while True:
        epoch_seed = int(np.random.default_rng([seed, epoch, shard[0]]).integers(2**31))
        examples = dataset.train.read(
            shard,
            order_seed=epoch_seed,
            start=first_step * batch_size,
            stop=steps_per_epoch * batch_size,
        )
        positions = tf.data.Dataset.range(first_step * batch_size, steps_per_epoch * batch_size)
        base_seed = tf.constant([seed, epoch], tf.int64)

        def preprocess(position, example):
            image, label = example
            example_seed = tf.random.experimental.stateless_fold_in(
                tf.random.experimental.stateless_fold_in(base_seed, shard[0]), position
            )
            view_seed, auto_seed, cutout_seed = tf.unstack(
                tf.random.experimental.stateless_split(example_seed, num=3)
            )
            kind, ops, magnitude = auto_augment
            image = view(image, view_seed if cutout or kind != "none" else example_seed)
            if kind == "trivialaugment":
                image = augment_lib.trivial_augment(
                    tf.ensure_shape(image, dataset.info.image_shape), auto_seed
                )
            elif kind == "randaugment":
                image = augment_lib.rand_augment(
                    tf.ensure_shape(image, dataset.info.image_shape),
                    auto_seed,
                    ops=ops,
                    magnitude=magnitude,
                )
            image = augment_lib.normalise(image, dataset.info.mean, dataset.info.std)
            if cutout:
                image = augment_lib.cutout(image, cutout_seed, size=cutout)
            return {"image": image, "label": label}

        batches = (
            tf.data.Dataset.zip(positions, examples)
            .map(as_written(preprocess), num_parallel_calls=tf.data.AUTOTUNE)
            .batch(batch_size, drop_remainder=True)
            .prefetch(tf.data.AUTOTUNE)
        )
        yield from batches.as_numpy_iterator()
        epoch, first_step = epoch + 1, 0


def eval_batches(
    dataset: Dataset,
    *,
    batch_size: int,
    process_index: int | None = None,
    process_count: int | None = None,
) -> Iterator[dict]:
    """Returns an iterator over this process's share of the eval split, once, in a fixed order,
    last batch padded.

    Every process yields ceil(ceil(num_eval / P) / batch_size) batches; over all processes the
    examples with mask True are the split, each exactly once.

    Yields:
      {"image": float32 [batch_size, H, W, C] normalised, "label": int32 [batch_size], "mask": bool
      [batch_size]}.
    """
    _check_batch_size(batch_size)
    shard = _shard(process_index, process_count)
    num_batches = _ceil_div(_ceil_div(dataset.info.num_eval, shard[1]), batch_size)
    return _eval_stream(dataset, batch_size=batch_size, shard=shard, num_batches=num_batches)


def _eval_stream(dataset: Dataset, *, batch_size, shard, num_batches):
    tf = tensorflow()
    from resnet_jax.data import augment as augment_lib

    info = dataset.info

    def preprocess(image, label):
        if dataset.varying_size:
            image = augment_lib.centre_crop(image, size=info.image_shape[0])
        image = augment_lib.normalise(image, info.mean, info.std)
        return {"image": image, "label": label, "mask": tf.constant(True)}

    padding = {
        "image": tf.zeros(info.image_shape, tf.float32),
        "label": tf.constant(0, tf.int32),
        "mask": tf.constant(False),
    }
    batches = (
        dataset.eval.read(shard)
        .map(as_written(preprocess), num_parallel_calls=tf.data.AUTOTUNE)
        .concatenate(tf.data.Dataset.from_tensors(padding).repeat())
        .take(num_batches * batch_size)
        .batch(batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )
    yield from batches.as_numpy_iterator()


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _check_batch_size(batch_size) -> None:
    if not isinstance(batch_size, (int, np.integer)) or batch_size <= 0:
        raise ValueError(
            f"batch_size={batch_size!r} must be a positive int (examples per batch per process)"
        )


def _shard(process_index, process_count) -> tuple[int, int]:
    index = jax.process_index() if process_index is None else process_index
    count = jax.process_count() if process_count is None else process_count
    if not 0 <= index < count:
        raise ValueError(f"process_index={index} must lie in [0, process_count={count})")
    return index, count


def _channel_stats(images) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images scaled to [0, 1], exact, from histograms.

    Args:
      images: an iterable of uint8 [..., C] arrays: images [H, W, C] of any sizes, or batches [N,
      H, W, C].
    """
    levels = np.arange(256) / 255.0
    counts = 0
    for image in images:
        # [C, 256]
        counts = counts + np.stack(
            [np.bincount(image[..., k].ravel(), minlength=256) for k in range(image.shape[-1])]
        )
    probabilities = counts / counts.sum(axis=1, keepdims=True)
    mean = probabilities @ levels  # [C]
    std = np.sqrt((probabilities * (levels - mean[:, None]) ** 2).sum(axis=1))
    return tuple(map(float, mean)), tuple(map(float, std))


def _from_arrays(
    name: str, train: ArraySplit, eval_split: ArraySplit, num_classes: int, normalisation=None
) -> Dataset:
    if train.images.shape[1:] != eval_split.images.shape[1:]:
        raise ValueError(
            f"{name}: train images are {train.images.shape[1:]} but eval images are "
            f"{eval_split.images.shape[1:]}; both splits need one (H, W, C)"
        )
    mean, std = normalisation or _channel_stats([train.images])
    info = DatasetInfo(
        name=name,
        num_classes=num_classes,
        image_shape=tuple(train.images.shape[1:]),
        num_train=len(train),
        num_eval=len(eval_split),
        mean=tuple(mean),
        std=tuple(std),
    )
    return Dataset(info=info, train=train, eval=eval_split)


def _stream_image_folder(path, *, split_seed, eval_fraction, size) -> Dataset:
    """An image folder read from its files as batches are made, centre-cropped (or
    Inception-cropped) to size."""
    if not isinstance(size, int) or size <= 0:
        raise ValueError(
            f"image_size={size!r} must be a positive int (the side of the square batches)"
        )
    (_, _, channels), num_classes = local.image_folder_shape(path, size)
    files = local.list_image_folder(path, split_seed=split_seed, eval_fraction=eval_fraction)
    train, eval_split = (
        FileSplit(*split, channels=channels) for split in (files.train, files.eval)
    )
    first = train.read((0, 1), stop=STATS_EXAMPLES).map(as_written(lambda image, label: image))
    mean, std = _channel_stats(first.as_numpy_iterator())
    info = DatasetInfo(
        name=files.name,
        num_classes=num_classes,
        image_shape=(size, size, channels),
        num_train=len(train),
        num_eval=len(eval_split),
        mean=mean,
        std=std,
    )
    return Dataset(info=info, train=train, eval=eval_split, varying_size=True)


def _prepare_offline(builder: tfds.core.DatasetBuilder, manual_dir) -> None:
    """Prepares a TFDS data set from local files only; raises, saying what is missing, rather than
    download."""
    config = tfds.download.DownloadConfig(try_download_gcs=False)
    if isinstance(builder, shapes32.Shapes32):  # Generated: needs no files.
        try:
            builder.download_and_prepare(download_config=config)
        # Raised by the final rename when another process prepared it at the same time.
        except OSError:
            if not builder.is_prepared():
                raise
        return
    needed = sorted(
        info.filename or url.rsplit("/", 1)[-1] for url, info in (builder.url_infos or {}).items()
    )
    where = f"{builder.data_dir_root} (data_dir=)"
    if manual_dir is None:
        raise FileNotFoundError(
            f"TFDS data set {builder.name!r} is not prepared in {where}, and nothing here "
            f"downloads: pass manual_dir= a directory holding {needed or 'its source files'}, "
            "or data_dir= where it is prepared"
        )
    manual_dir = Path(manual_dir).expanduser()
    missing = [f for f in needed if not (manual_dir / f).is_file()]
    if not needed or missing:
        raise FileNotFoundError(
            f"{manual_dir} lacks {missing or 'the source files'} needed to prepare "
            f"{builder.name!r} offline"
        )
    # One download_dir per data set: with a shared one, fashion_mnist reused mnist's files of the
    # same names.
    download_dir = Path(builder.data_dir_root) / "downloads" / builder.name
    builder.download_and_prepare(
        download_dir=download_dir,
        download_config=dataclasses.replace(config, manual_dir=manual_dir),
    )


def _tfds_builder(name: str, *, data_dir) -> tfds.core.DatasetBuilder:
    """The TFDS builder of an image classification set (its info is known before it is prepared)."""
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        raise ValueError(
            f"unknown data set {name!r}: use 'shapes32', 'npz' (with path=), 'image_folder' (with "
            "path=) or a TFDS image classification name such as 'cifar10' or 'mnist'"
        ) from None
    features = builder.info.features
    if not (
        {"image", "label"} <= set(features)
        and isinstance(features["image"], tfds.features.Image)
        and isinstance(features["label"], tfds.features.ClassLabel)
    ):
        raise ValueError(
            f"TFDS data set {name!r} has features {sorted(features)}, not an 'image' and a "
            "class 'label': it is not an image classification set"
        )
    return builder


def _load_tfds(name: str, *, data_dir, manual_dir, image_size, in_memory) -> Dataset:
    builder = _tfds_builder(name, data_dir=data_dir)
    features = builder.info.features
    if not builder.is_prepared():
        _prepare_offline(builder, manual_dir)
        builder = tfds.builder(name, data_dir=data_dir)  # Reads the info of what is now prepared.
    splits = builder.info.splits
    eval_name = next((s for s in ("validation", "test") if s in splits), None)
    if "train" not in splits or eval_name is None:
        raise ValueError(
            f"TFDS data set {name!r} has splits {sorted(splits)}; expected train and test or "
            "validation"
        )
    h, w, c = features["image"].shape
    varying_size = h is None or w is None
    if image_size is not None and not varying_size and image_size != h:
        raise ValueError(
            f"image_size={image_size} is for data sets of varying image size; {name!r} images are "
            f"{h}x{w}"
        )
    if in_memory is None:
        in_memory = (
            not varying_size and splits["train"].num_examples * h * w * c <= MAX_IN_MEMORY_BYTES
        )
    if in_memory and varying_size:
        raise ValueError(f"in_memory=True needs images of one size; {name!r} images vary in size")
    normalisation = NORMALISATION.get(builder.name)
    if in_memory:

        def read_all(split):
            arrays = tfds.as_numpy(
                builder.as_dataset(
                    split=split, batch_size=-1, read_config=tfds.ReadConfig(try_autocache=False)
                )
            )
            return ArraySplit(arrays["image"], arrays["label"].astype(np.int32))

        return _from_arrays(
            name,
            read_all("train"),
            read_all(eval_name),
            num_classes=features["label"].num_classes,
            normalisation=normalisation,
        )
    if varying_size:
        h = w = image_size or DEFAULT_IMAGE_SIZE
    # Estimated from the first examples: reading the whole split would take long.
    if normalisation is None:
        first = (
            TfdsSplit(builder, "train")
            .read((0, 1), stop=STATS_EXAMPLES)
            .map(as_written(lambda image, label: image))
        )
        normalisation = _channel_stats(first.as_numpy_iterator())
    mean, std = normalisation
    info = DatasetInfo(
        name=name,
        num_classes=features["label"].num_classes,
        image_shape=(h, w, c),
        num_train=splits["train"].num_examples,
        num_eval=splits[eval_name].num_examples,
        mean=mean,
        std=std,
    )
    return Dataset(
        info=info,
        train=TfdsSplit(builder, "train"),
        eval=TfdsSplit(builder, eval_name),
        varying_size=varying_size,
    )
