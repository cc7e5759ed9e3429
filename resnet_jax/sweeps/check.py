"""A sweep's points checked before any of them runs: the fields exist and each model keeps a
feature map."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

from resnet_jax.nn import trace
from resnet_jax.nn.models import get_model
from resnet_jax.sweeps.grid import point_config, point_name


def check_points(
    config,
    points: Sequence[dict],
    image_shape: tuple[int, int, int] | None = None,
    num_classes: int = 10,
) -> None:
    """Before anything runs: every point's fields exist in the config, and (given the data's image
    shape
    [H, W, C]) its model builds and keeps a feature map on those images: traced, nothing compiled.
    A ValueError names the point."""
    # a missing field raises, naming the point
    configs = [point_config(config, point) for point in points]
    if image_shape is None:
        return
    for point, point_cfg in zip(points, configs):
        try:
            model = get_model(**point_cfg.model, num_classes=num_classes)
            with warnings.catch_warnings():
                # a degenerate map is the run's warning to give, not an error
                warnings.simplefilter("ignore")
                trace.trace(model, (1, *image_shape))
        except (TypeError, ValueError) as error:
            raise ValueError(f"sweep point {point_name(point)}: config.model: {error}") from None
