"""Model FLOPs of the diffusion transformer, counted one way everywhere (benchmarks, logs, MFU).

2 FLOPs per multiply-add. Counted: every matmul of the DiT (patch embedding, text projection, per-block QKV / output /
cross-attention Q, K/V / output, MLP, the head) and attention's two matmuls (QK^T and PV) over the pairs
that are actually attended: within each clip for self-attention, each clip's text tokens for cross-attention.
Not counted: norms, softmax, RoPE, modulation arithmetic, the timestep MLP (per-row or per-token; small), the
text encoder. A training step is 3x the forward (backward = 2x forward); recomputation under remat is not
model FLOPs and is not counted.
"""

from __future__ import annotations

from collections.abc import Sequence


def dit_forward_flops(cfg, clip_tokens: Sequence[int], text_tokens: Sequence[int]) -> float:
    """Forward FLOPs of :class:`jaxsora.models.dit.DiT` (config ``cfg``) for clips of ``clip_tokens`` tokens
    each, clip i cross-attending ``text_tokens[i]`` text tokens."""
    d, inner = cfg.width, cfg.num_heads * cfg.head_dim
    mlp_in = (2 if cfg.mlp == "swiglu" else 1) * cfg.mlp_dim
    per_token_block = 2 * (d * 3 * inner + inner * d + d * inner + inner * d + d * mlp_in + cfg.mlp_dim * d)
    per_text_token_block = 2 * d * 2 * inner  # K/V projections of the (projected) text
    total = 0.0
    for n, lt in zip(clip_tokens, text_tokens, strict=True):
        attn = 2 * 2 * inner * (n * n + n * lt)  # QK^T and PV, self + cross
        total += cfg.depth * (n * per_token_block + lt * per_text_token_block + attn)
        total += 2 * n * (cfg.patch_dim * d + d * cfg.patch_dim)  # patch embedding and head
        total += 2 * lt * (cfg.text_dim * d + d * d)  # text projection
    return total


def dit_train_flops(cfg, clip_tokens: Sequence[int], text_tokens: Sequence[int]) -> float:
    return 3.0 * dit_forward_flops(cfg, clip_tokens, text_tokens)


# -- Wan 2.1's DiT (diffusers WanTransformer3DModel), counted from its own structure ----------------------

WAN21_1_3B = {
    "patch_size": (1, 2, 2),
    "in_channels": 16,
    "out_channels": 16,
    "num_layers": 30,
    "num_heads": 12,
    "head_dim": 128,
    "ffn_dim": 8960,
    "text_dim": 4096,
}
"""Wan 2.1 T2V 1.3B's transformer (diffusers ``WanTransformer3DModel`` keyword names, abridged)."""


def wan_forward_flops(
    batch: int,
    latent_shape: Sequence[int],
    text_tokens: int = 512,
    *,
    patch_size: Sequence[int] = (1, 2, 2),
    in_channels: int = 16,
    out_channels: int = 16,
    num_layers: int = 30,
    num_heads: int = 12,
    head_dim: int = 128,
    ffn_dim: int = 8960,
    text_dim: int = 4096,
) -> float:
    """Forward FLOPs of a Wan 2.1 DiT (diffusers ``WanTransformer3DModel``) on ``batch`` latents of shape
    ``latent_shape = (frames, height, width)`` with ``text_tokens`` text states each; counted as
    :func:`dit_forward_flops` counts (2 per multiply-add; matmuls and attention's QK^T and PV; no norms,
    softmax, RoPE, modulation or timestep MLP), so one figure serves both models at the same shape.

    Per row, with ``n`` video tokens (latent voxels / patch voxels), ``d = heads * head_dim``:
    patch embedding (a strided Conv3d, ``prod(patch) * in_channels -> d`` per token); the text embedding
    (``text_dim -> d``, GELU, ``d -> d`` per text token); per block: self-attention q, k, v, o (``4 d^2`` per
    token), attention ``2 * 2 * d * n * n``; cross-attention q, o (``2 d^2`` per token), k, v of the text
    (``2 d^2`` per text token), attention ``2 * 2 * d * n * text_tokens``; the FFN (``2 d ffn_dim`` per
    token); and the output projection (``d -> prod(patch) * out_channels`` per token).
    """
    f, h, w = (int(s) for s in latent_shape)
    pt, ph, pw = (int(p) for p in patch_size)
    if f % pt or h % ph or w % pw:
        raise ValueError(
            f"latent shape {tuple(latent_shape)} is not divisible by the patch {tuple(patch_size)}"
        )
    n = (f // pt) * (h // ph) * (w // pw)
    lt = int(text_tokens)
    d = num_heads * head_dim
    voxels = pt * ph * pw
    mac = 0  # multiply-adds of one row
    mac += n * voxels * in_channels * d  # patch embedding
    mac += lt * (text_dim * d + d * d)  # text embedding
    per_block = n * 4 * d * d + 2 * d * n * n  # self-attention projections, QK^T + PV
    per_block += n * 2 * d * d + lt * 2 * d * d + 2 * d * n * lt  # cross-attention
    per_block += n * 2 * d * ffn_dim  # FFN
    mac += num_layers * per_block
    mac += n * d * voxels * out_channels  # output projection
    return 2.0 * batch * mac


def wan_train_flops(batch: int, latent_shape: Sequence[int], text_tokens: int = 512, **config) -> float:
    """A training step: 3x :func:`wan_forward_flops` (recomputation under checkpointing not counted)."""
    return 3.0 * wan_forward_flops(batch, latent_shape, text_tokens, **config)
