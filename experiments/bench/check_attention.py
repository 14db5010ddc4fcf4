"""On a GPU: the cuDNN kernels (plain and packed-segment) agree with the XLA reference, forward and backward.

    python experiments/bench/check_attention.py

Packed sequences like the trainer's (several clips + padding per row; per-clip caption rows for cross-
attention), bf16 inputs; prints the max abs difference of outputs and gradients against the XLA path (run in
float32), and fails if either exceeds the bf16 tolerance.
"""

import jax
import jax.numpy as jnp
import numpy as np

from jaxsora.models import attention as attn


def packed_segments(b, s, clips, rng):
    seg = np.zeros((b, s), np.int32)
    for i in range(b):
        cuts = np.sort(rng.choice(np.arange(16, s - 16), clips - 1, replace=False))
        bounds = [0, *cuts, s - rng.integers(0, 64)]
        for j in range(clips):
            seg[i, bounds[j] : bounds[j + 1]] = j + 1
    return jnp.asarray(seg)


def main():
    rng = np.random.default_rng(0)
    b, s, h, d, clips, text_len = 4, 2048, 6, 64, 7, 64
    q, k, v = (jnp.asarray(rng.normal(size=(b, s, h, d)), jnp.bfloat16) for _ in range(3))
    seg = packed_segments(b, s, clips, rng)
    tk, tv = (jnp.asarray(rng.normal(size=(b, 12 * text_len, h, d)), jnp.bfloat16) for _ in range(2))
    lengths = rng.integers(8, text_len, (b, 12))
    text_seg = np.zeros((b, 12, text_len), np.int32)
    for i in range(b):
        for j in range(clips):
            text_seg[i, j, : lengths[i, j]] = j + 1
    text_seg = jnp.asarray(text_seg.reshape(b, -1))
    worst = 0.0
    for name, (kk, vv, kv_seg) in {"self": (k, v, seg), "cross": (tk, tv, text_seg)}.items():
        for label, qs, ks in (("segments", seg, kv_seg), ("none", None, None)):
            if name == "cross" and qs is None:
                continue

            def loss(q, k, v, impl, qs=qs, ks=ks):
                out = attn.attention(
                    q, k, v, q_segment_ids=qs, kv_segment_ids=ks, max_segments=12, implementation=impl
                )
                return jnp.sum(
                    out.astype(jnp.float32) * jnp.cos(jnp.arange(out.size).reshape(out.shape) * 0.01)
                ), out

            (_, out), grads = jax.jit(
                jax.value_and_grad(lambda *a: loss(*a, "cudnn"), (0, 1, 2), has_aux=True)
            )(q, kk, vv)
            f32 = [x.astype(jnp.float32) for x in (q, kk, vv)]
            (_, ref), ref_grads = jax.jit(
                jax.value_and_grad(lambda *a: loss(*a, "xla"), (0, 1, 2), has_aux=True)
            )(*f32)
            diff = float(jnp.max(jnp.abs(out.astype(jnp.float32) - ref)))
            gdiff = max(
                float(jnp.max(jnp.abs(g.astype(jnp.float32) - r))) / max(float(jnp.max(jnp.abs(r))), 1e-6)
                for g, r in zip(grads, ref_grads, strict=True)
            )
            print(f"{name:5s} {label:8s} out max|diff| {diff:.4f}   grads max|diff|/max|ref| {gdiff:.4f}")
            worst = max(worst, diff, gdiff)
    assert worst < 0.05, f"cuDNN attention disagrees with XLA: {worst}"
    print("cuDNN attention matches XLA (bf16 tolerance)")
    check_remat(q, k, v, seg)


def check_remat(q, k, v, seg):
    """Under each remat policy the gradients are the same, and ``save_attention``/``dots`` run the cuDNN
    forward kernel once (its residuals kept through ``attention.saveable``), ``full`` twice."""
    from jaxsora.models.layers import REMAT_POLICIES

    w = jnp.asarray(np.random.default_rng(1).normal(size=(q.shape[-1], q.shape[-1])) * 0.1, jnp.bfloat16)

    def block(q, k, v):
        q = jnp.tanh(q @ w)  # something around the kernel for remat to recompute
        out = attn.attention(q, k, v, q_segment_ids=seg, kv_segment_ids=seg, max_segments=12)
        return jnp.sum(jnp.sin(out.astype(jnp.float32)))

    ref = None
    for policy in ("none", "full", "save_attention", "dots"):
        f = block if policy == "none" else jax.checkpoint(block, policy=REMAT_POLICIES[policy])
        fn = jax.jit(jax.grad(f, (0, 1, 2)))
        hlo = fn.lower(q, k, v).compile().as_text()
        forwards = hlo.count('custom_call_target="__cudnn$fmhaSoftmax"')
        grads = fn(q, k, v)
        if ref is None:
            ref = grads
        diff = max(
            float(jnp.max(jnp.abs(a.astype(jnp.float32) - b.astype(jnp.float32))))
            for a, b in zip(grads, ref, strict=True)
        )
        print(f"remat={policy:15s} cuDNN forward calls {forwards}   grads max|diff| vs none {diff:.2e}")
        assert diff < 1e-2, policy
        if policy in ("none", "save_attention", "dots"):
            assert forwards == 1, f"remat={policy}: the cuDNN forward ran {forwards} times"


if __name__ == "__main__":
    main()
