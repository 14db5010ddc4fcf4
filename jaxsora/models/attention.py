"""The one attention function every model calls; it picks the kernel for the backend.

``attention(q, k, v, q_segment_ids=..., kv_segment_ids=...)`` with ``q [B, S, H, Dh]`` and ``k, v [B, T, H, Dh]``.
Segment ids say who may attend whom: query ``i`` attends key ``j`` iff ``q_segment_ids[i] == kv_segment_ids[j]``
and both are > 0 (0 = padding). That one rule covers NaViT packing (self-attention stays inside each clip) and
per-clip text conditioning (a clip's video tokens attend only its own caption's tokens, whose row carries the
clip's segment id). Queries with no key to attend (padding) return zeros.

Kernels (``implementation``):

- ``"cudnn"``: cuDNN flash attention (``jax.nn.dot_product_attention(implementation="cudnn")``). Without
  segment ids it is the plain kernel; with them, cuDNN's packed-sequence mode (per-segment lengths and
  offsets, Hopper or newer), so masking costs no ``[S, T]`` mask in memory and fully masked blocks no work.
  Segments must be contiguous runs numbered 1..M (what :mod:`jaxsora.data.packing` makes; text rows are
  contiguous too). Needs bf16/fp16 inputs and a head dim that is a multiple of 8, <= 256.
- ``"splash"``: the Pallas Splash-attention kernel on TPU, with segment ids, mapped over the batch and
  (tensor-sharded) heads with ``shard_map``.
- ``"xla"``: plain einsum-softmax-einsum with an explicit mask, fp32 logits; runs anywhere (CPU tests).
- ``"auto"`` (default): cudnn on GPU when the dtype and head size allow it, splash on TPU, else xla.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from jax.ad_checkpoint import checkpoint_name

IMPLEMENTATIONS = ("auto", "xla", "cudnn", "splash")
_NEG = -1e30


def choose_implementation(implementation: str, dtype, head_dim: int) -> str:
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(f"attention implementation must be one of {IMPLEMENTATIONS}, got {implementation!r}")
    if implementation != "auto":
        return implementation
    backend = jax.default_backend()
    if backend == "gpu" and jnp.dtype(dtype) in (jnp.bfloat16, jnp.float16) and head_dim % 8 == 0:
        return "cudnn" if head_dim <= 256 else "xla"
    if backend == "tpu" and head_dim % 128 == 0:
        return "splash"
    return "xla"


def segment_mask(q_segment_ids, kv_segment_ids):
    """bool ``[B, S, T]``: the attention pattern segment ids describe."""
    return (q_segment_ids[:, :, None] == kv_segment_ids[:, None, :]) & (q_segment_ids[:, :, None] > 0)


def attention(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    *,
    q_segment_ids: jax.Array | None = None,
    kv_segment_ids: jax.Array | None = None,
    max_segments: int | None = None,
    implementation: str = "auto",
) -> jax.Array:
    """Scaled dot-product attention ``[B, S, H, Dh]``; see the module docstring for the segment rule.

    ``max_segments`` bounds the segment ids (the packer's ``max_clips_per_pack``); the cuDNN packed kernel
    and Splash kernels need it with segment ids; XLA does not."""
    if (q_segment_ids is None) != (kv_segment_ids is None):
        raise ValueError("give both q_segment_ids and kv_segment_ids, or neither")
    if q.ndim != 4 or k.shape != v.shape or q.shape[0] != k.shape[0] or q.shape[2:] != k.shape[2:]:
        raise ValueError(f"need q [B,S,H,D] and k, v [B,T,H,D]; got {q.shape}, {k.shape}, {v.shape}")
    impl = choose_implementation(implementation, q.dtype, q.shape[-1])
    if impl != "xla" and q_segment_ids is not None and not max_segments:
        raise ValueError(f"the {impl} attention kernel needs max_segments with segment ids")
    if impl == "cudnn":
        kernel = functools.partial(_cudnn, max_segments=max_segments)
    elif impl == "splash":
        kernel = _splash
    else:
        kernel = _xla
    segments = () if q_segment_ids is None else (q_segment_ids, kv_segment_ids)
    out = saveable(lambda q, k, v, *seg: kernel(q, k, v, *(seg or (None, None))), RESIDUALS)(
        q, k, v, *segments
    )
    if impl == "xla":
        return out
    if q_segment_ids is not None:  # rows with nothing to attend: zeros, as the xla path gives
        kv_len, _ = packed_lengths(kv_segment_ids, max_segments)
        out = jnp.where(_has_partner(q_segment_ids, kv_len)[:, :, None, None], out, 0).astype(out.dtype)
    return out


RESIDUALS = "attention"  # the name remat policies use to keep the attention kernels' residuals


def saveable(kernel, name: str):
    """``kernel`` with its own VJP's residuals (and its output) named ``name`` by ``checkpoint_name``.

    A custom-VJP kernel such as cuDNN flash attention keeps residuals of its own (the softmax statistics) that
    no remat policy can name; under ``jax.checkpoint`` the whole forward kernel then runs again in the backward
    pass. Through this wrapper a policy that saves ``name`` keeps them all and never re-runs the kernel;
    without remat nothing changes (custom-VJP residuals are kept anyway)."""
    tree = {}

    @jax.custom_vjp
    def run(*args):
        return kernel(*args)

    def fwd(*args):
        out, vjp = jax.vjp(kernel, *args)
        leaves, tree["def"] = jax.tree.flatten(vjp)
        return checkpoint_name(out, name), [checkpoint_name(x, name) for x in leaves]

    def bwd(residuals, g):
        return jax.tree.unflatten(tree["def"], residuals)(g)

    run.defvjp(fwd, bwd)
    return run


def _has_partner(segment_ids, other_lengths):
    """bool ``[B, S]``: the token is in a segment (> 0) that the other side has tokens of
    (``other_lengths [B, M]`` from :func:`packed_lengths`)."""
    present = jnp.take_along_axis(other_lengths > 0, jnp.maximum(segment_ids - 1, 0), axis=1)
    return (segment_ids > 0) & present


def _xla(q, k, v, q_seg, kv_seg):
    scale = 1.0 / math.sqrt(q.shape[-1])
    logits = jnp.einsum("bshd,bthd->bhst", q, k, preferred_element_type=jnp.float32) * scale
    if q_seg is None:
        weights = jax.nn.softmax(logits, axis=-1)
    else:
        mask = segment_mask(q_seg, kv_seg)[:, None]
        weights = jax.nn.softmax(jnp.where(mask, logits, _NEG), axis=-1)
        weights = jnp.where(mask, weights, 0.0)
    return jnp.einsum(
        "bhst,bthd->bshd", weights.astype(v.dtype), v, preferred_element_type=jnp.float32
    ).astype(q.dtype)


def packed_lengths(segment_ids: jax.Array, max_segments: int) -> tuple[jax.Array, jax.Array]:
    """Segment ids ``[B, S]`` (contiguous runs 1..M, 0 = padding) -> cuDNN's per-segment lengths ``[B, M]``
    and start offsets ``[B, M + 1]``, -1 for absent segments."""
    ids = jnp.arange(1, max_segments + 1, dtype=segment_ids.dtype)
    hit = segment_ids[:, None, :] == ids[None, :, None]  # [B, M, S]
    lengths = jnp.sum(hit, axis=-1, dtype=jnp.int32)
    starts = jnp.argmax(hit, axis=-1).astype(jnp.int32)
    present = lengths > 0
    lengths = jnp.where(present, lengths, -1)
    offsets = jnp.where(present, starts, -1)
    offsets = jnp.concatenate([offsets, jnp.full((offsets.shape[0], 1), -1, jnp.int32)], axis=1)
    return lengths, offsets


@jax.custom_vjp
def _zero_grad_outside(x, valid):
    """Identity whose gradient is zeroed at rows outside every segment: cuDNN's packed backward leaves
    those rows of dq/dk/dv unwritten (garbage, NaN), which would otherwise reach the parameters."""
    return x


def _zero_grad_outside_fwd(x, valid):
    return x, valid


def _zero_grad_outside_bwd(valid, g):
    return jnp.where(valid[:, :, None, None], g, jnp.zeros_like(g)), None


_zero_grad_outside.defvjp(_zero_grad_outside_fwd, _zero_grad_outside_bwd)


def _cudnn(q, k, v, q_seg, kv_seg, *, max_segments):
    if q_seg is None:
        return jax.nn.dot_product_attention(q, k, v, implementation="cudnn")
    from jax._src.cudnn.fused_attention_stablehlo import MaskType
    from jax._src.cudnn.fused_attention_stablehlo import dot_product_attention as cudnn_attention

    q_len, q_off = packed_lengths(q_seg, max_segments)
    kv_len, kv_off = packed_lengths(kv_seg, max_segments)
    q_valid = _has_partner(q_seg, kv_len)
    kv_valid = _has_partner(kv_seg, q_len)
    q = _zero_grad_outside(q, q_valid)
    k = _zero_grad_outside(k, kv_valid)
    v = _zero_grad_outside(v, kv_valid)
    return cudnn_attention(
        q,
        k,
        v,
        q_seqlen=q_len,
        kv_seqlen=kv_len,
        q_offsets=q_off,
        kv_offsets=kv_off,
        scale=1.0 / math.sqrt(q.shape[-1]),
        mask_type=MaskType.PADDING,
    )


@functools.cache
def _splash_kernel(s: int, t: int, heads: int, interpret: bool):
    from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_kernel as sk
    from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_mask as sm

    def block(n):
        return max(b for b in (512, 256, 128, n) if n % b == 0 and b <= n)

    sizes = sk.BlockSizes(
        block_q=block(s),
        block_kv=block(t),
        block_kv_compute=block(t),
        block_q_dkv=block(s),
        block_kv_dkv=block(t),
        block_kv_dkv_compute=block(t),
        block_q_dq=block(s),
        block_kv_dq=block(t),
    )
    mask = sm.MultiHeadMask([sm.FullMask((s, t)) for _ in range(heads)])
    return sk.make_splash_mha(mask, block_sizes=sizes, head_shards=1, q_seq_shards=1, interpret=interpret)


def _splash(q, k, v, q_seg, kv_seg, interpret: bool = False):
    """Splash attention per device: batch over (data, fsdp), heads over tensor, via shard_map."""
    from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_kernel as sk
    from jax.sharding import PartitionSpec as P

    b, s, h, d = q.shape
    t = k.shape[1]
    if q_seg is None:
        q_seg, kv_seg = jnp.ones((b, s), jnp.int32), jnp.ones((b, t), jnp.int32)
    scale = 1.0 / math.sqrt(d)

    def local(q, k, v, qs, ks):
        kernel = _splash_kernel(q.shape[1], k.shape[1], q.shape[2], interpret)
        # Splash wants [H, S, D]; padding rows attend padding keys (segment 0 == 0), zeroed by the caller.
        one = lambda q, k, v, qs, ks: kernel(  # noqa: E731
            (q * scale).swapaxes(0, 1), k.swapaxes(0, 1), v.swapaxes(0, 1), sk.SegmentIds(q=qs, kv=ks)
        ).swapaxes(0, 1)
        return jax.vmap(one)(q, k, v, qs, ks)

    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty:
        return local(q, k, v, q_seg.astype(jnp.int32), kv_seg.astype(jnp.int32))
    batch = tuple(a for a in ("data", "fsdp") if a in mesh.axis_names and b % mesh.shape[a] == 0)
    heads = "tensor" if "tensor" in mesh.axis_names and h % mesh.shape["tensor"] == 0 else None
    qkv_spec = P(batch or None, None, heads, None)
    seg_spec = P(batch or None, None)
    return jax.shard_map(
        local,
        in_specs=(qkv_spec, qkv_spec, qkv_spec, seg_spec, seg_spec),
        out_specs=qkv_spec,
        check_vma=False,
    )(q, k, v, q_seg.astype(jnp.int32), kv_seg.astype(jnp.int32))
