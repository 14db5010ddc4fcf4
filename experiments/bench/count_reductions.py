"""Count the reductions in the gradient of one Wan-size DiT block (CPU trace, no GPU): how many passes over
activation-sized tensors the norms, modulation and bias gradients make, and the bytes they read at least.

    python experiments/bench/count_reductions.py [--batch 8] [--latent 5x32x32] [--depth 1]

Traces ``jax.grad`` of the MSE of :class:`~jaxsora.models.dit.DiT` at ``configs/wan13b_shape.py`` unrolled
(``scan=false``, no remat), the benchmark's B=8 shape, with ``roofline.py``'s tracer (every ``jit``,
``jax.checkpoint`` and custom-VJP body inlined, dead ops dropped). Attention is ``roofline.py``'s opaque
stand-in with cuDNN's inputs and outputs, so its own reductions (the softmax, inside cuDNN's kernel on a GPU)
are not counted. A row reduction reduces the last axis only (norm statistics and their
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


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--latent", default="5x32x32", help="latent frames x height x width (patches 1x2x2)")
    p.add_argument("--depth", type=int, default=1)
    p.add_argument("--text-tokens", type=int, default=512)
    args = p.parse_args(argv)

    import roofline

    closed, _, (b, n) = roofline.trace_step(
        args.depth, args.batch, args.latent, args.text_tokens, "float32", optimizer=False
    )
    prog, _ = roofline.Program.from_jaxpr(closed)
    found = [
        (op.prim, prog.avals[op.ins[0]].dtype, tuple(prog.avals[op.ins[0]].shape), op.axes)
        for op in prog.ops
        if op.prim in roofline.REDUCTIONS
    ]
    rows = collections.defaultdict(lambda: [0, 0])
    for name, dtype, shape, axes in found:
        kind = "row" if axes == (len(shape) - 1,) else ("column" if len(shape) - 1 not in axes else "all")
        key = (kind, name, str(dtype), shape, axes)
        rows[key][0] += 1
        rows[key][1] += int(np.prod(shape)) * np.dtype(dtype).itemsize
    total = collections.Counter()
    print(f"DiT depth {args.depth}, B={b}, {n} tokens a row: reductions in the gradient")
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
