"""The input pipeline: offline, deterministic, resumable, and eval counting every example once."""

import socket
import subprocess
import sys

import numpy as np
import pytest
from tiny_run import write_pixelless_npz

from resnet_jax import data
from resnet_jax.data import pipeline, shapes32

BATCH = 256  # shapes32/small has 2,000 train images: 7 steps an epoch.


@pytest.fixture(scope="module")
def tmp_data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("tfds")


@pytest.fixture(scope="module")
def offline():
    """Every connection or name lookup while active raises, and is recorded in case something
    swallows it. (Opening a socket stays allowed: urllib3 probes IPv6 support on import by binding
    ::1.)"""
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("the network is off in tests")

    with pytest.MonkeyPatch.context() as patch:
        for name in ("connect", "connect_ex", "sendto"):
            patch.setattr(socket.socket, name, refuse)
        for name in ("create_connection", "getaddrinfo", "gethostbyname"):
            patch.setattr(socket, name, refuse)
        yield attempts


@pytest.fixture(scope="module")
def shapes_small(tmp_data_dir, offline):
    dataset = data.load("shapes32/small", data_dir=tmp_data_dir)
    assert offline == []
    return dataset


def take(iterator, n):
    return [next(iterator) for _ in range(n)]


def train(dataset, **kwargs):
    defaults = dict(batch_size=BATCH, seed=0, augment="cifar", process_index=0, process_count=1)
    return data.train_batches(dataset, **{**defaults, **kwargs})


def assert_batches_equal(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for key in x:
            np.testing.assert_array_equal(x[key], y[key])


def as_uint8(images, info):
    """Undoes the normalisation of un-augmented images: float32 [N, H, W, C] -> uint8 [N, H, W,
    C]."""
    return np.round((images * np.array(info.std) + np.array(info.mean)) * 255).astype(np.uint8)


def row_keys(images):
    return [image.tobytes() for image in images]


def test_pipelines_leave_no_autograph_files_in_the_temp_folder(shapes_small, tmp_path, monkeypatch):
    """tf.data traces our functions as written: autograph's conversion would leave a generated .py
    file in the temp folder for each function of each epoch's pipeline."""
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    take(train(shapes_small, auto_augment="trivialaugment", cutout=8), 2)
    take(data.eval_batches(shapes_small, batch_size=BATCH, process_index=0, process_count=1), 1)
    assert [p.name for p in tmp_path.iterdir()] == []


def test_shapes32_builds_offline_into_data_dir(shapes_small, tmp_data_dir, offline):
    assert data.shape_of("shapes32/small", data_dir=tmp_data_dir) == ((32, 32, 3), 10)
    info = shapes_small.info
    assert (info.name, info.num_classes, info.image_shape) == ("shapes32/small", 10, (32, 32, 3))
    assert (info.num_train, info.num_eval) == (2000, 500)
    assert (tmp_data_dir / "shapes32" / "small" / "1.0.0").is_dir()
    np.testing.assert_array_equal(np.bincount(shapes_small.train.labels), [200] * 10)
    assert offline == []


def test_generate_is_deterministic_and_balanced():
    images, labels = shapes32.generate(100, seed=3)
    assert (
        images.shape == (100, 32, 32, 3) and images.dtype == np.uint8 and labels.dtype == np.int32
    )
    np.testing.assert_array_equal(np.bincount(labels), [10] * 10)
    again, _ = shapes32.generate(100, seed=3)
    other, _ = shapes32.generate(100, seed=4)
    np.testing.assert_array_equal(images, again)
    assert not np.array_equal(images, other)


def test_linear_model_on_pixels_stays_near_chance():
    """Colours and positions are independent of the class: the best linear map of raw pixels (least
    squares on one-hot targets, ridge chosen on the test set, which only flatters it) stays near
    chance (10%)."""
    images, labels = shapes32.generate(2500, seed=0)
    x = images.reshape(len(images), -1).astype(np.float32) / 255.0  # [2500, 3072]
    x = x - x[:2000].mean(axis=0)
    targets = np.eye(10, dtype=np.float32)[labels[:2000]]
    gram = x[:2000] @ x[:2000].T  # Dual form: [2000, 2000] is cheaper than [3072, 3072].
    accuracies = []
    for ridge in (10.0, 1000.0):
        alpha = np.linalg.solve(gram + ridge * np.eye(2000, dtype=np.float32), targets)
        predictions = np.argmax(x[2000:] @ (x[:2000].T @ alpha), axis=1)
        accuracies.append(np.mean(predictions == labels[2000:]))
    assert max(accuracies) < 0.3, accuracies


def test_train_batches_shapes_and_normalisation(shapes_small):
    batch = next(train(shapes_small, augment="none"))
    assert batch.keys() == {"image", "label"}
    assert batch["image"].shape == (BATCH, 32, 32, 3) and batch["image"].dtype == np.float32
    assert batch["label"].shape == (BATCH,) and batch["label"].dtype == np.int32
    assert abs(batch["image"].mean()) < 0.1 and 0.9 < batch["image"].std() < 1.1


def test_train_batches_are_deterministic_in_the_seed(shapes_small):
    first = take(train(shapes_small, seed=1), 2)
    assert_batches_equal(first, take(train(shapes_small, seed=1), 2))
    assert not np.array_equal(first[0]["image"], next(train(shapes_small, seed=2))["image"])


@pytest.mark.parametrize("augment", ["cifar", "imagenet"])
def test_resume_continues_exactly(shapes_small, augment):
    """start_step=k yields batches k, k+1, ... of an uninterrupted run, across the epoch boundary
    at 7."""
    uninterrupted = take(train(shapes_small, augment=augment), 10)
    assert_batches_equal(
        take(train(shapes_small, augment=augment, start_step=5), 5), uninterrupted[5:]
    )


def test_an_epoch_visits_distinct_examples_and_the_next_reshuffles(shapes_small):
    info = shapes_small.info
    batches = take(train(shapes_small, augment="none"), 14)  # Two epochs of 7 steps.
    train_rows = set(row_keys(shapes_small.train.images))
    epochs = [
        row_keys(as_uint8(np.concatenate([b["image"] for b in batches[e * 7 : (e + 1) * 7]]), info))
        for e in (0, 1)
    ]
    for rows in epochs:
        assert len(set(rows)) == 7 * BATCH and set(rows) <= train_rows
    assert epochs[0] != epochs[1]


def test_processes_read_disjoint_shards(shapes_small):
    per_process = [
        np.concatenate(
            [
                b["image"]
                for b in take(
                    train(
                        shapes_small,
                        augment="none",
                        batch_size=100,
                        process_index=p,
                        process_count=2,
                    ),
                    10,
                )
            ]
        )
        for p in (0, 1)
    ]
    keys = [set(row_keys(as_uint8(images, shapes_small.info))) for images in per_process]
    assert len(keys[0]) == len(keys[1]) == 1000 and not keys[0] & keys[1]


@pytest.mark.parametrize("process_count", [1, 3])
def test_eval_covers_the_split_exactly_once(shapes_small, process_count):
    per_process = [
        list(
            data.eval_batches(
                shapes_small, batch_size=64, process_index=p, process_count=process_count
            )
        )
        for p in range(process_count)
    ]
    # Every process runs the same number of steps.
    assert len({len(batches) for batches in per_process}) == 1
    batches = [b for process in per_process for b in process]
    mask = np.concatenate([b["mask"] for b in batches])
    assert mask.dtype == bool and mask.sum() == shapes_small.info.num_eval == 500
    images = as_uint8(np.concatenate([b["image"] for b in batches])[mask], shapes_small.info)
    labels = np.concatenate([b["label"] for b in batches])[mask]
    order = np.argsort(row_keys(images))
    expected_order = np.argsort(row_keys(shapes_small.eval.images))
    np.testing.assert_array_equal(images[order], shapes_small.eval.images[expected_order])
    np.testing.assert_array_equal(labels[order], shapes_small.eval.labels[expected_order])


def test_streamed_tfds_split_resumes_and_evaluates_once(tmp_data_dir, offline):
    streamed = data.load("shapes32/small", data_dir=tmp_data_dir, in_memory=False)
    assert isinstance(streamed.train, pipeline.TfdsSplit) and streamed.info.num_train == 2000
    uninterrupted = take(train(streamed), 9)
    assert_batches_equal(take(train(streamed, start_step=6), 3), uninterrupted[6:])
    masks = [
        b["mask"]
        for p in (0, 1)
        for b in data.eval_batches(streamed, batch_size=64, process_index=p, process_count=2)
    ]
    assert sum(mask.sum() for mask in masks) == 500


def test_cifar_augmentation_is_a_deterministic_shifted_flipped_window():
    import tensorflow as tf

    from resnet_jax.data import augment

    image = np.arange(32 * 32 * 3, dtype=np.int32).reshape(32, 32, 3) % 251
    padded = np.pad(image, ((4, 4), (4, 4), (0, 0)))
    views = [
        augment.pad_crop_flip(tf.constant(image), tf.constant([0, s])).numpy() for s in range(8)
    ]
    assert all(view.shape == image.shape for view in views)
    np.testing.assert_array_equal(
        views[0], augment.pad_crop_flip(tf.constant(image), tf.constant([0, 0]))
    )
    assert len({view.tobytes() for view in views}) > 1
    windows = {
        padded[y : y + 32, x : x + 32][:, ::flip].tobytes()
        for y in range(9)
        for x in range(9)
        for flip in (1, -1)
    }
    assert all(view.tobytes() in windows for view in views)


def test_imagenet_views_have_the_requested_size():
    import tensorflow as tf

    from resnet_jax.data import augment

    image = tf.constant(np.random.default_rng(0).integers(0, 256, (48, 64, 3)), tf.uint8)
    crop = augment.inception_crop(image, tf.constant([1, 2]), size=24)
    assert crop.shape == (24, 24, 3)
    np.testing.assert_array_equal(crop, augment.inception_crop(image, tf.constant([1, 2]), size=24))
    assert augment.centre_crop(image, size=24).shape == (24, 24, 3)


def write_npz(path, n, *, shape=(8, 8), num_classes=4, seed=0):
    rng = np.random.default_rng(seed)
    np.savez(
        path,
        images=rng.integers(0, 256, (n, *shape), dtype=np.uint8),
        labels=np.arange(n) % num_classes,
    )


def test_npz_file_is_split_per_class_by_the_seed(tmp_path):
    write_npz(tmp_path / "toy.npz", 100)
    dataset = data.load("npz", path=tmp_path / "toy.npz", split_seed=1)
    info = dataset.info
    assert (info.name, info.num_classes, info.image_shape, info.num_train, info.num_eval) == (
        "toy",
        4,
        (8, 8, 1),
        80,
        20,
    )
    np.testing.assert_array_equal(np.bincount(dataset.eval.labels), [5] * 4)
    again = data.load("npz", path=tmp_path / "toy.npz", split_seed=1)
    other = data.load("npz", path=tmp_path / "toy.npz", split_seed=2)
    np.testing.assert_array_equal(dataset.eval.images, again.eval.images)
    assert not np.array_equal(dataset.eval.images, other.eval.images)
    eval_rows, train_rows = set(row_keys(dataset.eval.images)), set(row_keys(dataset.train.images))
    assert not eval_rows & train_rows
    assert next(train(dataset, batch_size=16))["image"].shape == (16, 8, 8, 1)
    assert data.shape_of("npz", path=tmp_path / "toy.npz") == ((8, 8, 1), 4)


def test_npz_directory_uses_its_train_and_test_files(tmp_path):
    write_npz(tmp_path / "train.npz", 40, shape=(6, 6, 3), seed=0)
    write_npz(tmp_path / "test.npz", 10, shape=(6, 6, 3), seed=1)
    info = data.load("npz", path=tmp_path).info
    assert (info.name, info.image_shape, info.num_train, info.num_eval) == (
        tmp_path.name,
        (6, 6, 3),
        40,
        10,
    )
    assert data.shape_of("npz", path=tmp_path) == ((6, 6, 3), 4)


def test_shape_of_reads_the_headers_not_the_pixels(tmp_path):
    """The model is checked against shape_of before the data loads: it must work where the pixels
    cannot."""
    path = write_pixelless_npz(
        tmp_path / "pixelless.npz", images_shape=(12, 9, 7, 3), num_classes=5
    )
    assert data.shape_of("npz", path=path) == data.DataShape(image_shape=(9, 7, 3), num_classes=5)
    with pytest.raises(ValueError, match="is not a readable .npz archive"):
        data.load("npz", path=path)


def test_image_folder(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("test", 2)):
        for name in ("cat", "dog"):
            (tmp_path / split / name).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)).save(
                    tmp_path / split / name / f"{i}.png"
                )
    dataset = data.load("image_folder", path=tmp_path)
    assert (dataset.info.num_classes, dataset.info.image_shape) == (2, (5, 7, 3))
    assert (dataset.info.num_train, dataset.info.num_eval) == (12, 4)
    np.testing.assert_array_equal(dataset.eval.labels, [0, 0, 1, 1])
    assert data.shape_of("image_folder", path=tmp_path) == ((5, 7, 3), 2)
    damaged = tmp_path / "train" / "dog" / "1.png"
    damaged.write_bytes(damaged.read_bytes()[:40])  # a truncated file
    with pytest.raises(ValueError, match=r"train/dog/1.png: not a readable image"):
        data.load("image_folder", path=tmp_path)


def test_image_folder_of_varying_sizes_streams_cropped_to_image_size(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    sizes = iter([(20, 31), (40, 24), (17, 17), (64, 50), (33, 21), (25, 60)] * 4)
    for split, n in (("train", 9), ("test", 3)):
        for name in ("cat", "dog"):
            (tmp_path / split / name).mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 256, (*next(sizes), 3), dtype=np.uint8)
                Image.fromarray(pixels).save(
                    tmp_path / split / name / f"{i}.{'png' if i % 2 else 'jpg'}"
                )
    with pytest.raises(ValueError, match="differ in shape .* set data.image_size"):
        data.load("image_folder", path=tmp_path)
    dataset = data.load("image_folder", path=tmp_path, image_size=16)
    assert (dataset.info.num_classes, dataset.info.image_shape) == (2, (16, 16, 3))
    assert (dataset.info.num_train, dataset.info.num_eval) == (18, 6)
    assert data.shape_of("image_folder", path=tmp_path, image_size=16) == ((16, 16, 3), 2)
    for augment in ("none", "cifar", "imagenet"):
        first = next(data.train_batches(dataset, batch_size=6, seed=0, augment=augment))
        assert first["image"].shape == (6, 16, 16, 3) and first["image"].dtype == np.float32
    # The order is the seed's and resumes exactly: step 2 of a fresh stream equals a stream started
    # at step 2.
    stream = data.train_batches(dataset, batch_size=6, seed=3, augment="cifar")
    batches = [next(stream) for _ in range(5)]  # 3 steps per epoch: into the second epoch
    resumed = next(data.train_batches(dataset, batch_size=6, seed=3, augment="cifar", start_step=4))
    np.testing.assert_array_equal(resumed["image"], batches[4]["image"])
    np.testing.assert_array_equal(resumed["label"], batches[4]["label"])
    # each once an epoch
    assert sorted(np.concatenate([b["label"] for b in batches[:3]])) == [0] * 9 + [1] * 9
    shown = [b for b in data.eval_batches(dataset, batch_size=4)]
    labels = np.concatenate([b["label"][b["mask"]] for b in shown])
    np.testing.assert_array_equal(labels, [0, 0, 0, 1, 1, 1])
    # Two processes together see every train example once an epoch.
    halves = [
        next(
            data.train_batches(
                dataset, batch_size=9, seed=0, augment="none", process_index=p, process_count=2
            )
        )
        for p in (0, 1)
    ]
    assert sorted(np.concatenate([h["label"] for h in halves])) == [0] * 9 + [1] * 9


def test_mnist5k_splits_4000_1000(shared_data):
    dataset = data.load("npz", path=shared_data / "mnist5k.npz")
    info = dataset.info
    assert (info.num_train, info.num_eval, info.num_classes, info.image_shape) == (
        4000,
        1000,
        10,
        (28, 28, 1),
    )
    np.testing.assert_array_equal(np.bincount(dataset.eval.labels), [100] * 10)
    assert abs(info.mean[0] - 0.1307) < 0.01


def test_cifar10_npz_statistics_match_the_published_ones(shared_data):
    info = data.load("npz", path=shared_data / "cifar10").info
    assert (info.num_train, info.num_eval, info.num_classes) == (50_000, 10_000, 10)
    np.testing.assert_allclose(info.mean, data.NORMALISATION["cifar10"][0], atol=1e-4)
    np.testing.assert_allclose(info.std, data.NORMALISATION["cifar10"][1], atol=1e-4)


@pytest.mark.slow
def test_tfds_mnist_prepares_offline_from_manual_dir(shared_data, tmp_path, offline):
    dataset = data.load("mnist", data_dir=tmp_path, manual_dir=shared_data / "mnist")
    assert (dataset.info.num_train, dataset.info.num_eval, dataset.info.image_shape) == (
        60_000,
        10_000,
        (28, 28, 1),
    )
    assert offline == []


def test_bad_input_says_what_to_fix(tmp_path, shapes_small):
    np.savez(tmp_path / "wrong.npz", x=np.zeros((2, 4, 4), np.uint8), y=np.zeros(2))
    np.savez(tmp_path / "floats.npz", images=np.zeros((2, 4, 4)), labels=np.zeros(2, int))
    for read in (data.load, data.shape_of):  # shape_of, which runs first, says what load would
        with pytest.raises(ValueError, match="unknown data set 'cifar11'"):
            read("cifar11", data_dir=tmp_path)
        with pytest.raises(FileNotFoundError, match="no file"):
            read("npz", path=tmp_path / "missing.npz")
        with pytest.raises(ValueError, match="needs path="):
            read("npz")
        with pytest.raises(ValueError, match=r"lacks \['images', 'labels'\]"):
            read("npz", path=tmp_path / "wrong.npz")
        with pytest.raises(ValueError, match="expected uint8"):
            read("npz", path=tmp_path / "floats.npz")
        with pytest.raises(FileNotFoundError, match="image_folder expects"):
            read("image_folder", path=tmp_path)
    with pytest.raises(FileNotFoundError, match="manual_dir="):
        data.load("mnist", data_dir=tmp_path)  # Not prepared there, and nothing downloads.
    with pytest.raises(FileNotFoundError, match="lacks .*train-images-idx3-ubyte.gz"):
        data.load("mnist", data_dir=tmp_path, manual_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="image_folder expects"):
        data.load("image_folder", path=tmp_path)
    for batch_size in (0, -3, 2.5):
        with pytest.raises(ValueError, match="batch_size"):
            next(train(shapes_small, batch_size=batch_size))
    with pytest.raises(ValueError, match="exceeds"):
        next(train(shapes_small, batch_size=4096))
    with pytest.raises(ValueError, match="augment="):
        next(train(shapes_small, augment="autoaugment"))


def test_importing_data_leaves_tensorflow_unloaded():
    code = "import sys, resnet_jax.data; assert 'tensorflow' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)
