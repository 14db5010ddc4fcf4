"""Meshes and the one table that maps logical axis names to mesh axes.

Every parameter and activation constraint in the models carries logical names ("batch", "embed", "mlp",
"heads", "conv_out", ...); :data:`LOGICAL_RULES` says which mesh axis (``data``, ``fsdp``, ``tensor``,
``sequence``) shards each. Change sharding strategy here, not in the models.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

MESH_AXES = ("data", "fsdp", "tensor", "sequence")

LOGICAL_RULES: tuple[tuple[str, str | tuple[str, ...] | None], ...] = (
    # activations
    ("batch", ("data", "fsdp")),
    ("length", "sequence"),
    ("time", None),
    ("height", None),
    ("width", None),
    ("channels", None),
    ("act_embed", None),
    ("act_heads", "tensor"),
    ("act_mlp", "tensor"),
    # parameters
    ("embed", "fsdp"),
    ("mlp", "tensor"),
    ("heads", "tensor"),
    ("kv", None),
    ("vocab", None),
    ("conv_in", None),
    ("conv_out", "fsdp"),
    ("kernel", None),
    ("norm", None),
    ("layers", None),
)


def make_mesh(shape: Mapping[str, int], devices: list | None = None) -> Mesh:
    """A mesh with axes (data, fsdp, tensor, sequence); one size may be -1 (all remaining devices)."""
    devices = list(jax.devices() if devices is None else devices)
    unknown = set(shape) - set(MESH_AXES)
    if unknown:
        raise ValueError(f"unknown mesh axes {sorted(unknown)}; use {MESH_AXES}")
    sizes = [int(shape.get(axis, 1)) for axis in MESH_AXES]
    if sizes.count(-1) > 1:
        raise ValueError(f"at most one mesh axis may be -1, got {dict(zip(MESH_AXES, sizes, strict=True))}")
    known = math.prod(s for s in sizes if s != -1)
    if -1 in sizes:
        if len(devices) % known:
            raise ValueError(
                f"{len(devices)} devices do not divide into a mesh with fixed axes of size {known}"
            )
        sizes[sizes.index(-1)] = len(devices) // known
    if math.prod(sizes) != len(devices):
        raise ValueError(
            f"mesh {dict(zip(MESH_AXES, sizes, strict=True))} needs {math.prod(sizes)} devices, "
            f"{len(devices)} are present"
        )
    try:
        return jax.make_mesh(tuple(sizes), MESH_AXES, devices=devices)
    except Exception:  # backends where make_mesh cannot place devices: plain row-major order
        return Mesh(np.asarray(devices).reshape(sizes), MESH_AXES)


def logical_sharding(mesh: Mesh, logical_axes: tuple[str | None, ...]) -> NamedSharding:
    spec = nn.logical_to_mesh_axes(logical_axes, LOGICAL_RULES)
    return NamedSharding(mesh, spec)


def batch_sharding(mesh: Mesh, ndim: int) -> NamedSharding:
    """Shards the leading (batch) dimension over data x fsdp; the rest replicated."""
    return logical_sharding(mesh, ("batch",) + (None,) * (ndim - 1))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def state_shardings(mesh: Mesh, abstract_state):
    """NamedShardings for a pytree whose leaves carry ``nn.LogicallyPartitioned`` metadata."""
    specs = nn.get_partition_spec(abstract_state)
    specs = nn.logical_to_mesh(specs, LOGICAL_RULES)
    return jax.tree.map(
        lambda s: NamedSharding(mesh, s), specs, is_leaf=lambda x: isinstance(x, PartitionSpec)
    )
