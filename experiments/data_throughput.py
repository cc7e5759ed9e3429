"""Input-pipeline throughput on CPU, in images/s: batches produced with nothing consuming them.

    python -m experiments.data_throughput  # shapes32, plus CIFAR-10 if present
    python -m experiments.data_throughput --steps=50 --batch_size=128

Measures the embedded shapes32 set (generated into --data_dir on first use) with the 'cifar' and
'imagenet'
augmentations and eval batches, and the CIFAR-10 .npz files of ../shared/data when they are there.
The first batches (pipeline start-up) are left out of the timing. Results are in docs/data.md.
"""

import itertools
import time
from pathlib import Path

from absl import flags

from resnet_jax import data, errors

CIFAR10_NPZ = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10"

flags.DEFINE_integer("batch_size", 256, "Examples per batch.")
flags.DEFINE_integer("steps", 100, "Timed batches per measurement.")
flags.DEFINE_string("data_dir", None, "Where shapes32 is cached (TFDS's default if unset).")
FLAGS = flags.FLAGS


def images_per_second(batches, steps: int, warmup: int = 5) -> float:
    for _ in itertools.islice(batches, warmup):
        pass
    start = time.perf_counter()
    count = sum(len(batch["label"]) for batch in itertools.islice(batches, steps))
    return count / (time.perf_counter() - start)


def measure(name: str, dataset: data.Dataset, *, batch_size: int, steps: int) -> None:
    print(f"{name}: {dataset.info}")
    for augment in ("none", "cifar", "imagenet"):
        batches = data.train_batches(dataset, batch_size=batch_size, seed=0, augment=augment)
        print(f"  train, augment={augment!r:11} {images_per_second(batches, steps):9.0f} images/s")
    eval_steps = min(steps, dataset.info.num_eval // batch_size - 5)
    rate = images_per_second(data.eval_batches(dataset, batch_size=batch_size), eval_steps)
    print(f"  eval                     {rate:9.0f} images/s")


def main(argv) -> None:
    errors.no_arguments(argv)
    args = FLAGS
    start = time.perf_counter()
    shapes = data.load("shapes32", data_dir=args.data_dir)
    print(
        f"load('shapes32'): {time.perf_counter() - start:.1f} s (generates and caches it the first "
        "time)"
    )
    measure("shapes32", shapes, batch_size=args.batch_size, steps=args.steps)
    if CIFAR10_NPZ.is_dir():
        start = time.perf_counter()
        cifar = data.load("npz", path=CIFAR10_NPZ)
        print(f"load('npz', path={CIFAR10_NPZ}): {time.perf_counter() - start:.1f} s")
        measure("cifar10 (npz)", cifar, batch_size=args.batch_size, steps=args.steps)
    else:
        print(f"{CIFAR10_NPZ} absent: CIFAR-10 skipped")


if __name__ == "__main__":
    errors.run_absl(main)
