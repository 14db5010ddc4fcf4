"""Transformer building blocks shared by the diffusion transformer and the byte-level text encoder.

Every parameter carries logical axis names (mapped to mesh axes by :data:`jaxsora.parallel.LOGICAL_RULES`);
parameters are float32, matmuls run in the module's ``dtype`` (bf16 by default) with float32 accumulation
where it matters (norms, softmax, modulation).

Memory: the elementwise pieces between matmuls (norms, activations, modulation, gated residual adds) are
wrapped in ``jax.checkpoint`` so that the backward pass keeps only their (mostly bf16) inputs and recomputes
the float32 intermediates on the fly; no matmul is ever recomputed by this. Without it autodiff keeps every
float32 intermediate of a norm or a GELU: ~265 KB per token per block at Wan 1.3B's width, against ~80 KB
with it (``experiments/bench/NOTES.md``, item "residuals").
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxsora.models import rope as rope_lib
from jaxsora.models.attention import RESIDUALS, attention

Dtype = Any


class Dense(nn.Module):
    """A linear layer over the last ``len(in_axes)`` input dims to ``features`` (any number of output dims),
    its kernel ``[*in_dims, *features]`` and bias created at full shape with logical names ``axes``."""

    features: tuple[int, ...]
    axes: tuple[str | None, ...]
    num_in: int = 1
    dtype: Dtype = jnp.bfloat16
    zero_init: bool = False
    use_bias: bool = True
    # Elementwise function applied to the input first (e.g. the MLP's GELU); it is recomputed in the backward
    # pass rather than kept, so only the input is stored for the gradient.
    input_fn: Callable | None = None

    @nn.compact
    def __call__(self, x):
        n_in, n_out = self.num_in, len(self.features)
        if len(self.axes) != n_in + n_out:
            raise ValueError(f"{self.name}: {len(self.axes)} axis names for a {n_in}+{n_out}-dim kernel")
        in_dims = tuple(x.shape[-n_in:]) if self.input_fn is None else self.in_dims_after_fn(x)
        init = (
            nn.initializers.zeros_init()
            if self.zero_init
            else nn.initializers.xavier_uniform(
                in_axis=tuple(range(n_in)), out_axis=tuple(range(n_in, n_in + n_out))
            )
        )
        kernel = self.param(
            "kernel",
            nn.with_logical_partitioning(init, self.axes),
            in_dims + tuple(self.features),
            jnp.float32,
        )
        y = _matmul(x.astype(self.dtype), kernel, self.dtype, n_in, self.input_fn)
        if self.use_bias:
            bias = self.param(
                "bias",
                nn.with_logical_partitioning(nn.initializers.zeros_init(), self.axes[n_in:]),
                tuple(self.features),
                jnp.float32,
            )
            y = y + bias.astype(self.dtype)
        return y

    def in_dims_after_fn(self, x):
        out = jax.eval_shape(self.input_fn, jax.ShapeDtypeStruct(x.shape, self.dtype))
        return tuple(out.shape[-self.num_in :])


def _contract(x, kernel, n_in: int):
    return jax.lax.dot_general(
        x, kernel, ((tuple(range(x.ndim - n_in, x.ndim)), tuple(range(n_in))), ((), ()))
    )


@functools.partial(jax.checkpoint, static_argnums=(2, 3, 4))
def _matmul(x, kernel, dtype, n_in: int, input_fn):
    """``input_fn(x) @ kernel`` in ``dtype``. Under ``jax.checkpoint`` the backward keeps ``x`` and the
    (float32) kernel it already has, and recomputes the cast kernel and ``input_fn(x)``, rather than keeping
    a ``dtype`` copy of every weight (under ``nn.scan``, a stacked copy of the whole model) and the
    activation's intermediates. The matmul itself is never recomputed: its output is not needed for its
    gradient."""
    if input_fn is not None:
        x = input_fn(x)
    return _contract(x, kernel.astype(dtype), n_in)


def dense(
    features: int | Sequence[int],
    axes: tuple[str | None, ...],
    *,
    dtype: Dtype,
    name: str,
    in_axes: int | tuple[int, ...] = -1,
    zero_init: bool = False,
    use_bias: bool = True,
    input_fn: Callable | None = None,
) -> Dense:
    """A :class:`Dense` over the last input dim (``in_axes=-1``) or the last few (``(-2, -1)``)."""
    feats = (features,) if isinstance(features, int) else tuple(features)
    num_in = 1 if isinstance(in_axes, int) else len(in_axes)
    return Dense(feats, tuple(axes), num_in, dtype, zero_init, use_bias, input_fn, name=name)


class RMSNorm(nn.Module):
    """RMS normalisation over the last axis with a learned scale (float32 statistics)."""

    axis_name: str = "norm"
    eps: float = 1e-6
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        scale = self.param(
            "scale",
            nn.with_logical_partitioning(nn.initializers.ones_init(), (self.axis_name,)),
            (x.shape[-1],),
        )
        return rms_norm(x, scale, self.eps, self.dtype)


@functools.partial(jax.checkpoint, static_argnums=(2, 3))
def rms_norm(x, scale, eps: float, dtype):
    """``x / rms(x) * scale`` in float32, cast to ``dtype``; the backward keeps only ``x`` and ``scale``."""
    x32 = x.astype(jnp.float32)
    y = x32 * jax.lax.rsqrt(jnp.mean(jnp.square(x32), axis=-1, keepdims=True) + eps)
    return (y * scale).astype(dtype)


def layer_norm(x, eps: float = 1e-6):
    """LayerNorm without parameters (the DiT's adaLN supplies scale and shift), float32."""
    x = x.astype(jnp.float32)
    mean = jnp.mean(x, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(x - mean), axis=-1, keepdims=True)
    return (x - mean) * jax.lax.rsqrt(var + eps)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def gather_rows(num_rows: int, rows, index):
    """``rows [B, M, D]`` -> ``[B, S, D]``, token ``s`` taking row ``index[b, s]`` (in ``[0, num_rows)``).

    The forward is a gather that fuses into its consumer; the backward sums each row's tokens with a one-hot
    matmul (``[B, S, M]^T @ [B, S, D]``) rather than a scatter-add, whose atomics would pile onto a handful of
    rows."""
    return jnp.take_along_axis(rows, index[..., None], axis=1)


def _gather_rows_fwd(num_rows, rows, index):
    return gather_rows(num_rows, rows, index), index


def _gather_rows_bwd(num_rows, index, g):
    onehot = jax.nn.one_hot(index, num_rows, dtype=g.dtype)
    d_rows = jnp.einsum("bsm,bsd->bmd", onehot, g, precision=jax.lax.Precision.HIGHEST)
    return d_rows, None


gather_rows.defvjp(_gather_rows_fwd, _gather_rows_bwd)


def _modulation(mod, table, i, index=None):
    """Row ``i`` of the adaLN modulation plus a block's learned ``table [K, D]``: ``mod [B, S|1, K, D]`` per token
    (or per row); with ``index [B, S]``, ``mod [B, M, K, D]`` holds one entry per distinct time and token ``s``
    reads entry ``index[b, s]``."""
    row = mod[:, :, i]
    if index is not None:
        row = gather_rows(mod.shape[1], row, index)
    return row + table[i]


@functools.partial(jax.checkpoint, static_argnums=(3, 4, 5))
def modulated_norm(x, mod, table, shift: int, scale: int, dtype, index=None):
    """adaLN: ``layer_norm(x) * (1 + scale) + shift`` cast to ``dtype``, the shift and scale being rows of
    ``mod + table`` (``index``: see :func:`_modulation`); the backward keeps only the inputs (``mod`` is shared
    by every block)."""
    scale_row = _modulation(mod, table, scale, index)
    return (layer_norm(x) * (1.0 + scale_row) + _modulation(mod, table, shift, index)).astype(dtype)


@functools.partial(jax.checkpoint, static_argnums=(3,))
def gated_add(x, mod, table, gate: int, h, index=None):
    """``x + gate * h`` computed in float32 (``h`` usually bf16) and kept in ``x``'s dtype, the gate a row of
    ``mod + table`` (``index``: see :func:`_modulation`); the backward keeps ``h`` as it is rather than a float32
    copy."""
    gate_row = _modulation(mod, table, gate, index)
    return (x.astype(jnp.float32) + gate_row * h.astype(jnp.float32)).astype(x.dtype)


def residual_add(x, h):
    """``x + h`` computed in float32, kept in ``x``'s dtype."""
    return (x.astype(jnp.float32) + h.astype(jnp.float32)).astype(x.dtype)


class MLP(nn.Module):
    """GELU (tanh) or SwiGLU feed-forward, ``[B, S, D] -> [B, S, D]``."""

    hidden: int
    kind: str = "gelu"  # gelu | swiglu
    dtype: Dtype = jnp.bfloat16
    zero_init_out: bool = False

    @nn.compact
    def __call__(self, x):
        d = x.shape[-1]
        x = x.astype(self.dtype)
        if self.kind == "swiglu":
            h = dense((2, self.hidden), ("embed", None, "mlp"), dtype=self.dtype, name="wi")(x)
            h = nn.with_logical_constraint(h, ("batch", "length", None, "act_mlp"))
            act = _swiglu
        elif self.kind == "gelu":
            h = dense(self.hidden, ("embed", "mlp"), dtype=self.dtype, name="wi")(x)
            h = nn.with_logical_constraint(h, ("batch", "length", "act_mlp"))
            act = _gelu
        else:
            raise ValueError(f"mlp must be 'gelu' or 'swiglu', got {self.kind!r}")
        # The activation runs inside wo's matmul function: the backward keeps wi's output only (one [.., hidden]
        # bf16 tensor per token, not the five a GELU's autodiff would keep) and recomputes the activation.
        return dense(
            d, ("mlp", "embed"), dtype=self.dtype, name="wo", zero_init=self.zero_init_out, input_fn=act
        )(h)


def _gelu(h):
    return jax.nn.gelu(h, approximate=True)


def _swiglu(h):
    return jax.nn.silu(h[..., 0, :]) * h[..., 1, :]


class SelfAttention(nn.Module):
    """Fused-QKV multi-head self-attention with optional QK-norm and rotary positions, segment-masked."""

    num_heads: int
    head_dim: int
    qk_norm: bool = True
    dtype: Dtype = jnp.bfloat16
    implementation: str = "auto"
    max_segments: int | None = None

    @nn.compact
    def __call__(self, x, rope: rope_lib.Rotary | None, segment_ids):
        d = x.shape[-1]
        qkv = dense(
            (3, self.num_heads, self.head_dim), ("embed", "qkv", "heads", "kv"), dtype=self.dtype, name="qkv"
        )(x.astype(self.dtype))
        qkv = nn.with_logical_constraint(qkv, ("batch", "length", None, "act_heads", None))
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        if self.qk_norm:
            q = RMSNorm("kv", dtype=self.dtype, name="q_norm")(q)
            k = RMSNorm("kv", dtype=self.dtype, name="k_norm")(k)
        if rope is not None:
            q, k = rope.apply(q), rope.apply(k)
        out = attention(
            q,
            k,
            v,
            q_segment_ids=segment_ids,
            kv_segment_ids=segment_ids,
            max_segments=self.max_segments,
            implementation=self.implementation,
        )
        out = nn.with_logical_constraint(out, ("batch", "length", "act_heads", None))
        return dense(d, ("heads", "kv", "embed"), dtype=self.dtype, name="out", in_axes=(-2, -1))(out)


class CrossAttention(nn.Module):
    """Video tokens attend text states; a token sees only the text rows of its own segment."""

    num_heads: int
    head_dim: int
    qk_norm: bool = True
    dtype: Dtype = jnp.bfloat16
    implementation: str = "auto"
    max_segments: int | None = None
    zero_init_out: bool = True

    @nn.compact
    def __call__(self, x, text, segment_ids, text_segment_ids):
        d = x.shape[-1]
        q = dense((self.num_heads, self.head_dim), ("embed", "heads", "kv"), dtype=self.dtype, name="q")(
            x.astype(self.dtype)
        )
        kv = dense(
            (2, self.num_heads, self.head_dim), ("embed", "qkv", "heads", "kv"), dtype=self.dtype, name="kv"
        )(text.astype(self.dtype))
        q = nn.with_logical_constraint(q, ("batch", "length", "act_heads", None))
        kv = nn.with_logical_constraint(kv, ("batch", "length", None, "act_heads", None))
        k, v = kv[:, :, 0], kv[:, :, 1]
        if self.qk_norm:
            q = RMSNorm("kv", dtype=self.dtype, name="q_norm")(q)
            k = RMSNorm("kv", dtype=self.dtype, name="k_norm")(k)
        out = attention(
            q,
            k,
            v,
            q_segment_ids=segment_ids,
            kv_segment_ids=text_segment_ids,
            max_segments=self.max_segments,
            implementation=self.implementation,
        )
        out = nn.with_logical_constraint(out, ("batch", "length", "act_heads", None))
        return dense(
            d,
            ("heads", "kv", "embed"),
            dtype=self.dtype,
            name="out",
            in_axes=(-2, -1),
            zero_init=self.zero_init_out,
        )(out)


_keep_attention = jax.checkpoint_policies.save_only_these_names(RESIDUALS)

# What the backward pass keeps of each block (the rest is recomputed from the block's input):
#   none            everything autodiff needs (no recomputation);
#   full            nothing: the whole block, attention kernels included, runs again;
#   save_attention  the attention kernels' inputs, outputs and statistics; the matmuls and elementwise ops
#                   around them run again (the best memory/compute trade when attention dominates: long clips);
#   dots            every matmul output and the attention kernels' residuals; only elementwise ops run again;
#   dots_no_batch   the same, but matmuls with batch dimensions (XLA attention's einsums) are not kept.
REMAT_POLICIES = {
    "none": None,
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots": jax.checkpoint_policies.save_from_both_policies(
        jax.checkpoint_policies.checkpoint_dots, _keep_attention
    ),
    "dots_no_batch": jax.checkpoint_policies.save_from_both_policies(
        jax.checkpoint_policies.dots_with_no_batch_dims_saveable, _keep_attention
    ),
    "save_attention": _keep_attention,
}


def repeat(block: type[nn.Module], *, depth: int, scan: bool, remat: str, num_broadcast: int):
    """``block`` applied ``depth`` times: ``nn.scan`` over stacked params (a leading "layers" axis) or a
    Python loop, each wrapped in ``nn.remat`` with the named policy (``REMAT_POLICIES``)."""
    if remat not in REMAT_POLICIES:
        raise ValueError(f"remat must be one of {sorted(REMAT_POLICIES)}, got {remat!r}")
    if remat != "none":
        block = nn.remat(block, policy=REMAT_POLICIES[remat], prevent_cse=not scan)
    if not scan:
        return block, False
    stacked = nn.scan(
        block,
        variable_axes={"params": 0},
        split_rngs={"params": True},
        in_axes=(nn.broadcast,) * num_broadcast,
        length=depth,
        metadata_params={nn.PARTITION_NAME: "layers"},
    )
    return stacked, True
