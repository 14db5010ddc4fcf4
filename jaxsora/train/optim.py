"""AdamW (or Muon for the transformer's matrices) with linear warm-up and cosine decay, global-norm clipping,
and an EMA of the weights.

Muon (``optim.kind = "muon"``): each attention and MLP weight matrix of a transformer (a ``kernel`` whose
logical axes include ``heads`` or ``mlp``) is updated by its Nesterov momentum made orthogonal (every singular
value ~1) by a few Newton-Schulz iterations, scaled to an update RMS of ``optim.muon_rms`` (0.2, about AdamW's,
so one learning rate and one schedule serve both); every other parameter (embeddings, the patch embedding and
head, timestep and modulation layers, norms, biases) keeps AdamW. Axes named ``layers`` (stacked blocks) and
``qkv`` (fused projections) are separate matrices; a kernel's input axes are ``embed`` (or, for an output
projection ending in ``embed``, every other axis).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

OPTIMIZERS = ("adamw", "muon")
# Newton-Schulz iteration x <- a x + (b A + c A^2) x, A = x x^T: the quintic's coefficients of Muon's authors,
# which drive singular values in (0, 1] to about 0.7-1.2 within 5 steps.
NS_COEFFS = (3.4445, -4.7750, 2.0315)
MUON_BATCH_AXES = ("layers", "qkv")


def schedule(opt: ml_collections.ConfigDict, total_steps: int) -> optax.Schedule:
    warmup = max(1, min(opt.warmup_steps, total_steps))
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=opt.lr,
        warmup_steps=warmup,
        decay_steps=max(total_steps, warmup + 1),
        end_value=opt.lr * opt.final_lr_fraction,
    )


def make_optimizer(opt: ml_collections.ConfigDict, total_steps: int) -> optax.GradientTransformation:
    return optax.chain(
        optax.clip_by_global_norm(opt.grad_clip),
        optax.adamw(schedule(opt, total_steps), b1=opt.b1, b2=opt.b2, weight_decay=opt.weight_decay),
    )


def ema_update(ema, params, decay: float):
    return jax.tree.map(lambda e, p: e + (1.0 - decay) * (p.astype(jnp.float32) - e), ema, params)


def make_unscaled_optimizer(
    opt: ml_collections.ConfigDict, boxed_params=None
) -> optax.GradientTransformation:
    """AdamW (or Muon, ``opt.kind``) without its learning rate: the caller multiplies the updates by ``-lr``
    (:func:`lr_at`), so the rate can follow something only the host knows, such as the fraction of a time
    budget used. Muon needs ``boxed_params``: the parameters (or their ``jax.eval_shape``) with their logical
    axis names (``nn.Partitioned`` leaves), which say which leaves are matrices and how."""
    kind = opt.get("kind", "adamw")
    if kind not in OPTIMIZERS:
        raise ValueError(f"optim.kind must be one of {OPTIMIZERS}, got {kind!r}")
    adam = optax.scale_by_adam(b1=opt.b1, b2=opt.b2)
    scale = adam  # what scales the gradients: Adam, or Adam and Muon by parameter (below)
    if kind == "muon":
        if boxed_params is None:
            raise ValueError("optim.kind=muon needs the parameters' logical axis names (boxed_params)")
        layouts = muon_layouts(boxed_params)
        if not any(v is not None for v in layouts.values()):
            raise ValueError("optim.kind=muon: no parameter is an attention or MLP matrix (logical axes)")
        muon = scale_by_muon(
            layouts,
            beta=opt.get("muon_beta", 0.95),
            rms=opt.get("muon_rms", 0.2),
            steps=opt.get("muon_steps", 5),
        )

        def labels(params):
            return _map_with_keys(lambda key, _: "adam" if layouts.get(key) is None else "muon", params)

        scale = optax.multi_transform({"adam": adam, "muon": muon}, labels)
    return optax.chain(
        optax.clip_by_global_norm(opt.grad_clip),
        scale,
        optax.add_decayed_weights(opt.weight_decay),
    )


# -- Muon ---------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class MatrixLayout:
    """How one parameter is read as matrices: ``batch`` axes (separate matrices), then ``inputs`` x ``outputs``."""

    batch: tuple[int, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    # the parameter's logical axis names, which put its update back in the parameter's layout on a mesh
    names: tuple[str | None, ...] = dataclasses.field(default=(), compare=False)


def matrix_layout(names: tuple[str | None, ...]) -> MatrixLayout | None:
    """The layout of a kernel with these logical axis names, or None where Muon does not apply (not an
    attention or MLP matrix)."""
    if not ({"heads", "mlp"} & set(names)):
        return None
    batch = tuple(i for i, n in enumerate(names) if n in MUON_BATCH_AXES)
    rest = [i for i, n in enumerate(names) if n not in MUON_BATCH_AXES]
    if len(rest) < 2:
        return None
    if names[rest[-1]] == "embed":  # an output projection: (heads, kv, embed), (mlp, embed)
        return MatrixLayout(batch, tuple(rest[:-1]), (rest[-1],), names)
    return MatrixLayout(batch, (rest[0],), tuple(rest[1:]), names)  # (embed, heads, kv), (embed, mlp)


def _is_box(x) -> bool:
    return isinstance(x, nn.Partitioned)


def _map_with_keys(fn, tree):
    """``fn(key, leaf)`` over ``tree``'s leaves, an ``nn.Partitioned`` box counting as one leaf: the same key
    for a parameter whether its tree is boxed or not."""
    return jax.tree_util.tree_map_with_path(
        lambda p, x: fn(jax.tree_util.keystr(p), x), tree, is_leaf=_is_box
    )


def muon_layouts(boxed_params) -> dict[str, MatrixLayout | None]:
    """Each parameter's key -> its :class:`MatrixLayout` (None: AdamW), from its logical axis names."""
    leaves = jax.tree_util.tree_leaves_with_path(boxed_params, is_leaf=_is_box)
    return {
        jax.tree_util.keystr(p): matrix_layout(tuple(x.names))
        if _is_box(x) and jax.tree_util.keystr(p).endswith("['kernel']")
        else None
        for p, x in leaves
    }


def orthogonalize(g: jax.Array, steps: int = 5) -> jax.Array:
    """``g [..., m, n]`` -> about the nearest semi-orthogonal matrix (``U V^T`` of its SVD), by Newton-Schulz
    iterations in bfloat16 (float32 accumulation), per leading index."""
    a, b, c = NS_COEFFS
    x = g.astype(jnp.bfloat16)
    tall = x.shape[-2] > x.shape[-1]
    if tall:
        x = jnp.swapaxes(x, -1, -2)
    norm = jnp.sqrt(jnp.sum(jnp.square(x.astype(jnp.float32)), axis=(-2, -1), keepdims=True))
    x = (x / (norm + 1e-7)).astype(jnp.bfloat16)

    def mm(p, q):
        return jnp.matmul(p, q, preferred_element_type=jnp.float32).astype(jnp.bfloat16)

    for _ in range(steps):
        gram = mm(x, jnp.swapaxes(x, -1, -2))
        x = a * x + mm(b * gram + c * mm(gram, gram), x)
    if tall:
        x = jnp.swapaxes(x, -1, -2)
    return x.astype(g.dtype)


def as_matrices(g: jax.Array, layout: MatrixLayout) -> jax.Array:
    """A parameter as a stack of matrices ``[n, fan_in, fan_out]`` (:class:`MatrixLayout`)."""
    x = jnp.transpose(g, (*layout.batch, *layout.inputs, *layout.outputs))
    fan_in = math.prod(g.shape[i] for i in layout.inputs)
    return x.reshape(-1, fan_in, math.prod(g.shape[i] for i in layout.outputs))


def from_matrices(x: jax.Array, shape: tuple[int, ...], layout: MatrixLayout) -> jax.Array:
    """:func:`as_matrices`' inverse, back to the parameter's ``shape``."""
    order = (*layout.batch, *layout.inputs, *layout.outputs)
    x = x.reshape(tuple(shape[i] for i in order))
    return jnp.transpose(x, tuple(int(i) for i in np.argsort(order)))


_FREE = jax.sharding.PartitionSpec.UNCONSTRAINED  # a matrix's own dimensions: as XLA finds best


def _matrix_devices(name: str) -> int:
    """How many devices the logical axis ``name`` maps to on the current (abstract) mesh; 1 without one."""
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty:
        return 1
    axes = nn.logical_to_mesh_axes((name,))[0]
    axes = (axes,) if isinstance(axes, str) else tuple(axes or ())
    return math.prod(mesh.shape[a] for a in axes if a in mesh.shape)


def _spread_over_devices(x: jax.Array) -> jax.Array:
    """A stack of matrices ``[k, m, n]`` zero-padded to a multiple of the devices that the logical axis
    ``matrices`` maps to, laid out by whole matrices over the devices of ``matrix_stacks`` (fsdp: from the
    parameters' shards by all-to-all), then split over all those of ``matrices`` (data-parallel replicas each
    take a slice of what they hold: no communication), so that each device runs the Newton-Schulz chains of
    1/N of the matrices (a zero matrix stays zero). A matrix's own dimensions stay as XLA finds best (split
    over tensor where the parameter is). Without a mesh, unchanged."""
    devices = _matrix_devices("matrices")
    if devices > 1:
        x = jnp.pad(x, ((0, -len(x) % devices), (0, 0), (0, 0)))
        x = nn.with_logical_constraint(x, ("matrix_stacks", _FREE, _FREE))
    return nn.with_logical_constraint(x, ("matrices", _FREE, _FREE))


def _gather_over_replicas(x: jax.Array) -> jax.Array:
    """Orthogonalised stacks from the ``matrices`` split back to the ``matrix_stacks`` one: replicas all-gather
    each other's matrices, in bfloat16, before the updates are cut out and cast to float32."""
    if _matrix_devices("matrices") > 1:
        x = nn.with_logical_constraint(x, ("matrix_stacks", _FREE, _FREE))
    return x


def orthogonal_updates(
    grads: dict[str, jax.Array], layouts: dict[str, MatrixLayout], *, rms: float, steps: int
):
    """Each parameter's update laid out as matrices, orthogonalised, and scaled so that its RMS is ``rms`` (a
    semi-orthogonal m x n matrix has RMS 1/sqrt(max(m, n))). Matrices of one size (after turning tall ones
    wide) are stacked into one Newton-Schulz chain: a DiT of 8 unscanned blocks has ~60 matrices of 3-4 sizes,
    and a chain of 15 small matmuls each would be launch-bound on a GPU.

    On a mesh each stack is split by whole matrices over the mesh axes of the logical axis ``matrices``
    (fsdp x data: :func:`_spread_over_devices`), in bfloat16, the precision the iterations run in, instead of
    each device gathering the parameters it holds a shard of and running every chain itself; data-parallel
    replicas then all-gather the orthogonalised matrices. Each update goes back to its parameter's layout
    (``MatrixLayout.names``)."""
    groups: dict[tuple[int, int], list[str]] = {}
    stacks, tall = {}, {}
    for key, g in grads.items():
        x = as_matrices(g.astype(jnp.bfloat16), layouts[key])
        tall[key] = x.shape[1] > x.shape[2]
        stacks[key] = jnp.swapaxes(x, 1, 2) if tall[key] else x
        groups.setdefault(stacks[key].shape[1:], []).append(key)
    out = {}
    for (_, n), keys in groups.items():
        spread = _spread_over_devices(jnp.concatenate([stacks[k] for k in keys]))
        done = _gather_over_replicas(orthogonalize(spread, steps))  # bfloat16, as the stacks
        start = 0
        for key in keys:
            x = done[start : start + len(stacks[key])].astype(jnp.float32) * (rms * math.sqrt(n))
            start += len(stacks[key])
            x = jnp.swapaxes(x, 1, 2) if tall[key] else x
            x = from_matrices(x, grads[key].shape, layouts[key]).astype(grads[key].dtype)
            names = layouts[key].names
            out[key] = nn.with_logical_constraint(x, names) if names else x
    return out


def orthogonal_update(g: jax.Array, layout: MatrixLayout, *, rms: float, steps: int) -> jax.Array:
    """One parameter's update (:func:`orthogonal_updates`)."""
    return orthogonal_updates({"g": g}, {"g": layout}, rms=rms, steps=steps)["g"]


class MuonState(NamedTuple):
    momentum: Any


def scale_by_muon(
    layouts: dict[str, MatrixLayout | None], *, beta: float = 0.95, rms: float = 0.2, steps: int = 5
) -> optax.GradientTransformation:
    """Nesterov momentum, orthogonalised per matrix (:func:`orthogonal_updates`); ``layouts`` from
    :func:`muon_layouts` (every leaf this transformation sees must have one)."""

    def init(params):
        return MuonState(momentum=jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), params))

    def update(updates, state, params=None):
        del params
        momentum = jax.tree.map(lambda m, g: beta * m + g.astype(jnp.float32), state.momentum, updates)
        nesterov = jax.tree.map(lambda m, g: beta * m + g.astype(jnp.float32), momentum, updates)

        flat = {jax.tree_util.keystr(p): g for p, g in jax.tree_util.tree_leaves_with_path(nesterov)}
        unknown = [key for key in flat if layouts.get(key) is None]
        if unknown:
            raise ValueError(f"Muon was given {unknown}, which are not attention or MLP matrices")
        done = orthogonal_updates(flat, layouts, rms=rms, steps=steps)
        return _map_with_keys(lambda key, _: done[key], nesterov), MuonState(momentum=momentum)

    return optax.GradientTransformation(init, update)


def lr_at(
    opt: ml_collections.ConfigDict, step: int, total_steps: int, progress: float | None = None
) -> float:
    """:func:`schedule`'s rate at ``step`` (a host float). With ``progress`` in [0, 1] the cosine decay
    follows it instead of the step count (warm-up still counts steps)."""
    warmup = max(1, min(opt.warmup_steps, total_steps))
    if step < warmup:
        return opt.lr * step / warmup
    if progress is None:
        progress = (step - warmup) / max(total_steps - warmup, 1)
    progress = min(max(progress, 0.0), 1.0)
    alpha = opt.final_lr_fraction
    return opt.lr * ((1.0 - alpha) * 0.5 * (1.0 + math.cos(math.pi * progress)) + alpha)
