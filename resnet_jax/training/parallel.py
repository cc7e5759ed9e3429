"""Where arrays live and how steps are compiled: one device, `pmap`, or `jit` over a device mesh.

    placement = Placement("sharding")
    # (state, batch) -> (state, metrics)
    step = placement.compile(functools.partial(train_step, ...))
    state = placement.put_state(host_state)                            # one copy -> devices
    state, metrics = step(state, placement.put_batch(local_batch))     # batch: this process's rows
    host_state = placement.to_host(state)                              # devices -> one NumPy copy

'pmap' keeps one copy of the state per local device ([D, ...]) and averages gradients with
`lax.pmean` over AXIS_NAME (the model's BatchNorm uses the same axis for cross-replica statistics);
'sharding' compiles one program over a Mesh of every device of every process, the batch split on
axis 0 and the state replicated, so XLA inserts the collectives. Both compute the same step as one
device on the same global batch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

MODES = ("single", "pmap", "sharding")
AXIS_NAME = "batch"


@dataclasses.dataclass(frozen=True)
class Placement:
    """One data-parallel mode: 'single' | 'pmap' | 'sharding'."""

    mode: str

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"Unknown parallel mode {self.mode!r}: use one of {MODES}.")
        if self.mode == "single" and jax.process_count() > 1:
            raise ValueError(
                "parallel='single' runs on one device of one process; with several processes use "
                "'pmap' or 'sharding'."
            )

    @property
    def axis_name(self) -> str | None:
        """The named axis that train/eval steps reduce over (pmap only: jit's collectives are
        implicit)."""
        return AXIS_NAME if self.mode == "pmap" else None

    @property
    def _local_mesh(self) -> Mesh:
        return Mesh(np.array(jax.local_devices()), (AXIS_NAME,))

    @property
    def _global_mesh(self) -> Mesh:
        return Mesh(np.array(jax.devices()), (AXIS_NAME,))

    def model(self, model):
        """The model with cross-replica BatchNorm where the step runs under pmap."""
        return model.clone(axis_name=AXIS_NAME) if self.mode == "pmap" else model

    def compile(self, step: Callable, *, donate_state: bool) -> Callable:
        """Compile step(state, batch) -> (outputs...) once; the state's buffers are reused when
        donated."""
        donate = (0,) if donate_state else ()
        if self.mode == "single":
            return jax.jit(step, donate_argnums=donate)
        if self.mode == "pmap":
            return jax.pmap(step, axis_name=AXIS_NAME, donate_argnums=donate)
        mesh = self._global_mesh
        replicated, split = (
            NamedSharding(mesh, PartitionSpec()),
            NamedSharding(mesh, PartitionSpec(AXIS_NAME)),
        )
        return jax.jit(
            step, in_shardings=(replicated, split), out_shardings=replicated, donate_argnums=donate
        )

    def put_state(self, tree: Any) -> Any:
        """One host copy of a pytree -> the mode's layout ([D, ...] stacked for pmap, replicated
        otherwise)."""
        if self.mode == "single":
            return jax.device_put(tree, jax.local_devices()[0])
        if self.mode == "pmap":
            d = jax.local_device_count()
            sharding = NamedSharding(self._local_mesh, PartitionSpec(AXIS_NAME))
            return jax.tree.map(
                lambda x: jax.device_put(np.broadcast_to(x, (d, *np.shape(x))), sharding), tree
            )
        replicated = NamedSharding(self._global_mesh, PartitionSpec())
        return jax.tree.map(
            lambda x: jax.make_array_from_callback(
                np.shape(x), replicated, lambda index: np.asarray(x)[index]
            ),
            tree,
        )

    def put_batch(self, batch: dict[str, np.ndarray]) -> Any:
        """This process's rows of the global batch ([N/P, ...] each) -> the devices (pmap: [D,
        N/(P*D), ...])."""
        if self.mode == "single":
            return jax.device_put(batch, jax.local_devices()[0])
        if self.mode == "pmap":
            d = jax.local_device_count()
            sharding = NamedSharding(self._local_mesh, PartitionSpec(AXIS_NAME))
            # [N, ...] -> [D, N/D, ...]
            return jax.tree.map(
                lambda x: jax.device_put(x.reshape(d, x.shape[0] // d, *x.shape[1:]), sharding),
                batch,
            )
        split = NamedSharding(self._global_mesh, PartitionSpec(AXIS_NAME))
        return jax.tree.map(lambda x: jax.make_array_from_process_local_data(split, x), batch)

    def to_host(self, tree: Any) -> Any:
        """The mode's layout -> one NumPy copy (every replica holds the same values)."""

        def first(x):
            x = np.asarray(x.addressable_data(0))
            return x[0] if self.mode == "pmap" else x

        return jax.tree.map(first, tree)
