"""Count the reductions in the gradient of one Wan-size DiT block (CPU trace, no GPU): how many passes over
activation-sized tensors the norms, modulation and bias gradients make, and the bytes they read at least.

    python experiments/bench/count_reductions.py [--batch 8] [--latent 5x32x32] [--depth 1]

Traces ``jax.grad`` of the MSE of :class:`~jaxsora.models.dit.DiT` at ``configs/wan13b_shape.py`` unrolled
(``scan=false``, no remat), the benchmark's B=8 shape, and walks the jaxpr (sub-jaxprs of ``jax.checkpoint``,
custom VJPs and jits included). Attention's own reductions (softmax over ``[B, heads, S, keys]``) are left out:
on a GPU they are inside cuDNN's kernel. A row reduction reduces the last axis only (norm statistics and their
backward), a column reduction keeps it (modulation and bias gradients). Bytes are each reduction's input as
traced (float32 where the trace converts first; a fused convert reads bf16, half that), so they bound the
traffic from above for one pass per reduction and from below for XLA's fusions (which read each input once
per kernel at best).
"""

from __future__ import annotations

import argparse
import collections
import pathlib
import sys

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parents[1]
for p in (REPO, HERE):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

REDUCTIONS = ("reduce_sum", "reduce_max", "reduce_min", "argmax", "argmin")


def reductions(jaxpr) -> list[tuple]:
    """``(primitive, dtype, shape, axes)`` of every reduction in ``jaxpr`` and its sub-jaxprs."""
    found = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name in REDUCTIONS:
            aval = eqn.invars[0].aval
            found.append((eqn.primitive.name, aval.dtype, tuple(aval.shape), tuple(eqn.params["axes"])))
        for value in eqn.params.values():
            for sub in value if isinstance(value, (list, tuple)) else (value,):
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    found.extend(reductions(inner))
    return found


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--latent", default="5x32x32", help="latent frames x height x width (patches 1x2x2)")
    p.add_argument("--depth", type=int, default=1)
    p.add_argument("--text-tokens", type=int, default=512)
    args = p.parse_args(argv)

    import flax.linen as nn
    import jax
    import jax.numpy as jnp
    import wan_compare

    from jaxsora.models.dit import DiT

    cfg = wan_compare.jax_dit_config(
        argparse.Namespace(jax_dit=[f"depth={args.depth}"], tiny=False), "none", scan=False
    )
    f, h, w = (int(x) for x in args.latent.split("x"))
    b, n = args.batch, f * (h // 2) * (w // 2)
    sds = jax.ShapeDtypeStruct
    x, t = sds((b, n, cfg.patch_dim), jnp.float32), sds((b,), jnp.float32)
    pos, text = sds((b, n, 3), jnp.int32), sds((b, args.text_tokens, cfg.text_dim), jnp.float32)
    model = DiT(cfg)
    params = jax.eval_shape(
        lambda *a: nn.meta.unbox(model.init(jax.random.key(0), *a)["params"]), x, t, pos, text
    )

    def loss(p, *a):
        return jnp.mean(jnp.square(model.apply({"params": p}, *a)))

    found = reductions(jax.make_jaxpr(jax.grad(loss))(params, x, t, pos, text).jaxpr)
    rows = collections.defaultdict(lambda: [0, 0])
    for name, dtype, shape, axes in found:
        if len(shape) == 4 and shape[1] == cfg.num_heads and shape[2] == n:
            continue  # attention's softmax: cuDNN's on a GPU
        kind = "row" if axes == (len(shape) - 1,) else ("column" if len(shape) - 1 not in axes else "all")
        key = (kind, name, str(dtype), shape, axes)
        rows[key][0] += 1
        rows[key][1] += int(np.prod(shape)) * np.dtype(dtype).itemsize
    total = collections.Counter()
    print(f"DiT {cfg.width} wide, depth {args.depth}, B={b}, {n} tokens a row: reductions in the gradient")
    print("| kind | op | input | axes | count | MB read (as traced) |")
    print("|---|---|---|---|---:|---:|")
    for (kind, name, dtype, shape, axes), (count, nbytes) in sorted(rows.items(), key=lambda kv: -kv[1][1]):
        total[kind] += nbytes
        if nbytes >= 1e6:
            print(
                f"| {kind} | {name} | {dtype} {list(shape)} | {list(axes)} | {count} | {nbytes / 1e6:.0f} |"
            )
    print(
        "total MB per block (the whole model but its blocks counted once): "
        + ", ".join(f"{k} {v / 1e6 / args.depth:.0f}" for k, v in total.items())
    )


if __name__ == "__main__":
    main()
