"""Meshes and the one table that maps logical axis names to mesh axes.

Every parameter and activation constraint in the models carries logical names ("batch", "embed", "mlp",
"heads", "conv_out", ...); :data:`LOGICAL_RULES` says which mesh axis (``data``, ``fsdp``, ``tensor``,
``sequence``) shards each. Change sharding strategy here, not in the models.
"""

from __future__ import annotations

import contextlib
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
    ("conv_t", None),
    ("conv_h", None),
    ("conv_w", None),
    ("norm", None),
    ("layers", None),
    ("embed_in", None),  # the input side of small square (width x width) matrices: the output side is "embed"
    ("qkv", None),  # the q/k/v (or k/v) index of fused projections
    ("modulation", None),  # adaLN's shift/scale/gate index
    ("patch", None),  # values of a spacetime patch token
    ("freq", None),  # sinusoidal timestep features
    # optimizer: Muon's Newton-Schulz chains run on whole matrices, each device 1/N of them: the stacks of
    # matrices are split over fsdp (reached from the parameters' fsdp shards by all-to-all), and data-parallel
    # replicas each take a slice of those and all-gather the results (bfloat16) afterwards, instead of every
    # replica running every chain (experiments/bench/muon_sharding.py). "matrices" starts with the axes of
    # "matrix_stacks", so that going from one to the other is a slice on each device.
    ("matrices", ("fsdp", "data")),
    ("matrix_stacks", "fsdp"),
)


def distributed_settings(env: Mapping[str, str]) -> dict | None:
    """How this process joins a multi-process (multi-host) run, read from ``env``; None when it runs alone.

    - ``JAX_COORDINATOR_ADDRESS`` (host:port of process 0), ``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID``, and
      optionally ``JAX_LOCAL_DEVICE_IDS`` (comma-separated): explicit, for any launcher.
    - ``JAXSORA_DISTRIBUTED=auto``: JAX's own cluster detection (TPU pod slices, SLURM, Open MPI, Kubernetes).
    - a SLURM or Open MPI job step of more than one task is detected the same way.
    """
    if env.get("JAX_COORDINATOR_ADDRESS"):
        missing = [k for k in ("JAX_NUM_PROCESSES", "JAX_PROCESS_ID") if not env.get(k)]
        if missing:
            raise ValueError(f"JAX_COORDINATOR_ADDRESS is set but {', '.join(missing)} is not")
        settings = {
            "coordinator_address": env["JAX_COORDINATOR_ADDRESS"],
            "num_processes": int(env["JAX_NUM_PROCESSES"]),
            "process_id": int(env["JAX_PROCESS_ID"]),
        }
        if env.get("JAX_LOCAL_DEVICE_IDS"):
            settings["local_device_ids"] = [int(i) for i in env["JAX_LOCAL_DEVICE_IDS"].split(",")]
        return settings if settings["num_processes"] > 1 else None
    if env.get("JAXSORA_DISTRIBUTED", "").lower() == "auto":
        return {}
    for key in ("SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE"):
        if int(env.get(key, "1") or 1) > 1:
            return {}
    return None


def initialize_distributed(env: Mapping[str, str] | None = None) -> bool:
    """``jax.distributed.initialize`` when this process is one of several (:func:`distributed_settings`);
    call it before anything touches a device. Returns whether it did; a second call does nothing."""
    import os

    settings = distributed_settings(os.environ if env is None else env)
    if settings is None or jax.distributed.is_initialized():
        return False
    jax.distributed.initialize(**settings)
    return True


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
    # Auto axes: XLA's sharding propagation, steered by the logical constraints in the models.
    axis_types = (jax.sharding.AxisType.Auto,) * len(MESH_AXES)
    try:
        return jax.make_mesh(tuple(sizes), MESH_AXES, axis_types=axis_types, devices=devices)
    except (ValueError, NotImplementedError):  # device kinds make_mesh cannot place: row-major order
        return Mesh(np.asarray(devices).reshape(sizes), MESH_AXES, axis_types=axis_types)


def logical_sharding(mesh: Mesh, logical_axes: tuple[str | None, ...]) -> NamedSharding:
    spec = nn.logical_to_mesh_axes(logical_axes, LOGICAL_RULES)
    return NamedSharding(mesh, spec)


def batch_sharding(mesh: Mesh, ndim: int) -> NamedSharding:
    """Shards the leading (batch) dimension over data x fsdp; the rest replicated."""
    return logical_sharding(mesh, ("batch",) + (None,) * (ndim - 1))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def _divisible(mesh: Mesh, spec: PartitionSpec, shape: tuple[int, ...]) -> PartitionSpec:
    """Drops mesh axes from dimensions they do not divide (e.g. a 3-channel output conv over fsdp=2)."""
    out = []
    for dim, axes in zip(shape, tuple(spec) + (None,) * (len(shape) - len(spec)), strict=True):
        names = (axes,) if isinstance(axes, str) else tuple(axes or ())
        names = tuple(n for n in names if mesh.shape[n] > 1)
        size = math.prod(mesh.shape[n] for n in names)
        out.append(None if not names or dim % size else (names[0] if len(names) == 1 else names))
    return PartitionSpec(*out)


def state_shardings(mesh: Mesh, abstract_state):
    """NamedShardings for a pytree of abstract arrays whose leaves carry ``nn.LogicallyPartitioned`` names."""
    specs = nn.logical_to_mesh(nn.get_partition_spec(abstract_state), LOGICAL_RULES)
    shapes = nn.meta.unbox(abstract_state)
    return jax.tree.map(
        lambda s, a: NamedSharding(mesh, _divisible(mesh, s, a.shape)),
        specs,
        shapes,
        is_leaf=lambda x: isinstance(x, PartitionSpec),
    )


def mesh_context(mesh: Mesh):
    """The context models are traced in: the mesh and the logical-axis rules."""
    stack = contextlib.ExitStack()
    stack.enter_context(jax.set_mesh(mesh))
    stack.enter_context(nn.logical_axis_rules(LOGICAL_RULES))
    return stack


def put_batch(mesh: Mesh, local_batch: np.ndarray) -> jax.Array:
    """This process's slice of a batch -> a global array sharded over (data, fsdp) on its first axis."""
    return jax.make_array_from_process_local_data(batch_sharding(mesh, local_batch.ndim), local_batch)


def compiler_options(config) -> dict | None:
    """XLA options for the DiT's jitted functions (train step, sampler), from the config's ``xla`` section.

    ``xla.gpu_triton_gemm=False`` turns off XLA's Triton GEMM fusions on GPU, so matmuls go to cuBLAS and the
    compile skips autotuning Triton tilings: ``configs/small.py``'s train step compiled in 14.3 s instead of
    40.6 s at the same step time (53.5 vs 55.3 ms) and Wan 1.3B's B=8 step ran 0.2963 vs 0.2970 s (one H100;
    experiments/bench/NOTES.md). Configs saved before the section existed get the default. None off GPU."""
    section = config.get("xla") if hasattr(config, "get") else None
    triton = True if section is None else bool(section.get("gpu_triton_gemm", True))
    if jax.default_backend() != "gpu" or triton:
        return None
    return {"xla_gpu_enable_triton_gemm": False}
