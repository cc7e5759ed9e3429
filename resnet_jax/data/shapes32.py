"""shapes32: the project's embedded image dataset, drawn procedurally, never downloaded.

Each 32x32 RGB image holds one glyph (the class: disk, ring, square, plus, cross, triangle,
horizontal bars, vertical bars, diamond, corner) at a random position and size, in a random colour,
over a background of a random colour with a gradient, pixel noise and a few small distractor blobs.
Colours are drawn independently of the class, so every class has the same mean image: a linear model
on raw pixels stays near chance, while a small CNN, which can find the glyph wherever it is, learns
the set to high accuracy in a few CPU minutes.

    images, labels = shapes32.generate(1000, seed=0)   # uint8 [1000, 32, 32, 3], int32 [1000]

`Shapes32` wraps `generate` as a TFDS builder, so `tfds.builder('shapes32', data_dir=D)` prepares
and caches it in D (seconds, no network); `resnet_jax.data.load('shapes32')` does that for you.
"""

import dataclasses

import numpy as np
import tensorflow_datasets as tfds

SIZE = 32
CHUNK = 1000  # Images drawn at once: arrays this small are about twice as fast as 20,000 at once.
CLASS_NAMES = (
    "disk",
    "ring",
    "square",
    "plus",
    "cross",
    "triangle",
    "hbars",
    "vbars",
    "diamond",
    "corner",
)


def _glyph_masks(label: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Where glyph `label` covers a pixel, given coordinates relative to the glyph: u right, v
    down, [-1, 1].

    Args:
      label: the class index. u, v: [N, H, W] pixel centres in glyph units (the glyph's box is [-1,
      1]^2).
    Returns:
      [N, H, W] bool.
    """
    box = np.maximum(np.abs(u), np.abs(v))
    radius = np.hypot(u, v)
    inside = box <= 1.0
    if label == 0:  # disk
        return radius <= 1.0
    if label == 1:  # ring
        return (radius <= 1.0) & (radius >= 0.5)
    if label == 2:  # square outline
        return inside & (box >= 0.5)
    if label == 3:  # plus
        return inside & ((np.abs(u) <= 0.3) | (np.abs(v) <= 0.3))
    if label == 4:  # cross (x)
        return inside & ((np.abs(u - v) <= 0.45) | (np.abs(u + v) <= 0.45))
    if label == 5:  # filled triangle, pointing up
        return inside & (np.abs(u) <= (v + 1.0) / 2.0)
    if label == 6:  # three horizontal bars
        return inside & (np.floor((v + 1.0) * 2.5) % 2 == 0)
    if label == 7:  # three vertical bars
        return inside & (np.floor((u + 1.0) * 2.5) % 2 == 0)
    if label == 8:  # diamond outline
        return (np.abs(u) + np.abs(v) <= 1.0) & (np.abs(u) + np.abs(v) >= 0.5)
    if label == 9:  # corner: left and bottom edges of the box
        return inside & ((u <= -0.4) | (v >= 0.4))
    raise ValueError(f"label {label} is not a shapes32 class: expected 0..{len(CLASS_NAMES) - 1}")


def _draw(rng: np.random.Generator, labels: np.ndarray) -> np.ndarray:
    """Draws one image per label. int32 [N] -> uint8 [N, 32, 32, 3]."""
    n = len(labels)
    grid = np.arange(SIZE, dtype=np.float32) + 0.5
    y, x = grid[None, :, None], grid[None, None, :]  # [1, H, 1], [1, 1, W]

    def uniform(low, high, shape):
        return rng.uniform(low, high, shape).astype(np.float32)

    # Background: a random colour, a linear gradient of random direction.
    background = uniform(0.0, 1.0, (n, 1, 1, 3))
    angle = uniform(0.0, 2 * np.pi, (n, 1, 1))
    ramp = ((np.cos(angle) * (x - SIZE / 2) + np.sin(angle) * (y - SIZE / 2)) / SIZE)[..., None]
    image = background + uniform(-0.3, 0.3, (n, 1, 1, 3)) * ramp  # [N, H, W, 3]

    # Clutter: small blobs of random colours, drawn before the glyph so the glyph stays whole.
    for _ in range(4):
        by, bx = uniform(0, SIZE, (2, n, 1, 1))
        half = uniform(0.5, 1.5, (n, 1, 1))
        blob = (
            (np.abs(y - by) <= half)
            & (np.abs(x - bx) <= half)
            & (rng.uniform(size=(n, 1, 1)) < 0.8)
        )
        np.copyto(image, uniform(0.0, 1.0, (n, 1, 1, 3)), where=blob[..., None])

    # The glyph: a random half-size r in pixels, a centre that keeps it inside, a colour far enough
    # from the background colour to be seen.
    r = uniform(4.5, 7.0, (n, 1, 1))
    cy, cx = (
        rng.uniform(r, SIZE - r).astype(np.float32),
        rng.uniform(r, SIZE - r).astype(np.float32),
    )
    u, v = (x - cx) / r, (y - cy) / r  # [N, H, W]
    colour = uniform(0.0, 1.0, (n, 1, 1, 3))
    too_close = np.linalg.norm(colour - background, axis=-1, keepdims=True) < 0.4
    colour = np.where(too_close, 1.0 - background, colour)
    mask = np.zeros((n, SIZE, SIZE), bool)
    for label in range(len(CLASS_NAMES)):
        rows = labels == label
        mask[rows] = _glyph_masks(label, u[rows], v[rows])
    np.copyto(image, colour, where=mask[..., None])

    image += 0.05 * rng.standard_normal(image.shape, dtype=np.float32)
    np.clip(image, 0.0, 1.0, out=image)
    return (image * 255.0 + 0.5).astype(np.uint8)  # Rounds to the nearest level.


def generate(num_examples: int, *, seed: int | tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Draws `num_examples` images, classes balanced (round robin, then shuffled), deterministic in
    `seed`.

    Returns:
      images: uint8 [N, 32, 32, 3]. labels: int32 [N], in 0..9.
    """
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(num_examples) % len(CLASS_NAMES)).astype(np.int32)
    chunks = [_draw(rng, labels[start : start + CHUNK]) for start in range(0, num_examples, CHUNK)]
    images = np.concatenate(chunks) if chunks else np.zeros((0, SIZE, SIZE, 3), np.uint8)
    return images, labels


@dataclasses.dataclass
class Shapes32Config(tfds.core.BuilderConfig):
    """Sizes of the two splits; `seed` fixes every pixel."""

    num_train: int = 20_000
    num_test: int = 2_000
    seed: int = 0


class Shapes32(tfds.core.GeneratorBasedBuilder):
    """TFDS builder of shapes32: generated by the project, so preparing it needs no download."""

    # TFDS reuses what is prepared under a version: change it whenever `generate` draws different
    # pixels.
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release."}
    BUILDER_CONFIGS = [
        Shapes32Config(name="default", description="20,000 train / 2,000 test images."),
        Shapes32Config(
            name="small",
            description="2,000 train / 500 test images, for tests.",
            num_train=2_000,
            num_test=500,
        ),
    ]

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description=__doc__.split("\n\n")[1],
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(SIZE, SIZE, 3)),
                    "label": tfds.features.ClassLabel(names=CLASS_NAMES),
                }
            ),
            supervised_keys=("image", "label"),
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # Nothing to download.
        config = self.builder_config
        # Distinct seeds per split, so no test image is a train image.
        return {
            "train": self._generate_examples(config.num_train, seed=(config.seed, 0)),
            "test": self._generate_examples(config.num_test, seed=(config.seed, 1)),
        }

    def _generate_examples(self, num_examples: int, seed):
        images, labels = generate(num_examples, seed=seed)
        for index, (image, label) in enumerate(zip(images, labels)):
            yield index, {"image": image, "label": int(label)}
