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
