"""Times the DiT train step (and forward) on random packed batches, without the data pipeline.

    python experiments/bench/dit_step.py --config configs/small.py [--clip-tokens 320] [--steps 20] \
        [--profile DIR] [--config.dit.width=512 ...]

Builds the config's model, fills packs of ``packing.seq_len`` tokens with clips of ``--clip-tokens`` tokens
(each with a full caption row), and reports the median step time, model TFLOP/s (jaxsora.flops) and peak
memory. Compile time is reported separately. ``--profile DIR`` adds where the device time goes (a profiler
trace of a few steps, summed per kernel and per kind: ``gpu_profile.py``).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxsora import flops, parallel
from jaxsora.config import load_config, split_override_args
from jaxsora.train.dit import BATCH_KEYS, DiTParts, train_step


def random_batch(config, parts, clip_tokens: int, rng):
    pk = config.packing
    b, s, k, length = pk.batch_size, pk.seq_len, pk.max_clips_per_pack, config.text.max_len
    per_pack = min(s // clip_tokens, k)
    seg = np.zeros((b, s), np.int32)
    for j in range(per_pack):
        seg[:, j * clip_tokens : (j + 1) * clip_tokens] = j + 1
    grid = np.zeros((b, k, 3), np.int32)
    grid[:, :per_pack] = (1, 1, clip_tokens)
    pos = np.zeros((b, s, 3), np.int32)
    pos[..., 2] = np.arange(s) % clip_tokens
    text_segment_ids = np.zeros((b, k), np.int32)
    text_segment_ids[:, :per_pack] = np.arange(1, per_pack + 1)
    batch = {
        "tokens": rng.normal(size=(b, s, parts.cfg.patch_dim)).astype(np.float32),
        "segment_ids": seg,
        "positions": pos,
        "text_tokens": rng.integers(3, 250, (b, k, length)).astype(np.int32),
        "text_mask": np.ones((b, k, length), bool),
        "text_segment_ids": text_segment_ids,
        "grid": grid,
    }
    return batch, [clip_tokens] * per_pack * b, [length] * per_pack * b


def main(argv=None):
    overrides, rest = split_override_args(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/small.py")
    p.add_argument("--clip-tokens", type=int, default=320)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--profile", default="", help="write a profiler trace here and print its summary")
    args = p.parse_args(rest)
    config = load_config(args.config, overrides)
    meta = {"latent_channels": 16, "temporal_factor": 4, "spatial_factor": 8}
    parts = DiTParts(config, meta)
    mesh = parallel.make_mesh(config.mesh.to_dict())
    abstract = jax.eval_shape(parts.init, jax.random.key(0))
    shardings = parallel.state_shardings(mesh, abstract)
    batch, clips, texts = random_batch(config, parts, args.clip_tokens, np.random.default_rng(0))
    bs = {k: parallel.batch_sharding(mesh, np.ndim(batch[k])) for k in BATCH_KEYS}
    with parallel.mesh_context(mesh):
        import flax.linen as nn

        state = jax.jit(lambda r: nn.meta.unbox(parts.init(r)), out_shardings=shardings)(jax.random.key(0))
        batch = jax.device_put(batch, bs)
        step = jax.jit(
            lambda s, b, r: train_step(s, b, r, jnp.float32(1e-4), parts=parts, ema_decay=0.999),
            in_shardings=(shardings, bs, None),
            out_shardings=(shardings, None),
            donate_argnums=0,
        )
        t0 = time.perf_counter()
        compiled = step.lower(state, batch, jax.random.key(1)).compile()
        compile_s = time.perf_counter() - t0
        state, aux = compiled(state, batch, jax.random.key(1))
        jax.block_until_ready(aux)
        times = []
        for i in range(args.steps):
            t = time.perf_counter()
            state, aux = compiled(state, batch, jax.random.key(2 + i))
            jax.block_until_ready(aux["loss"])
            times.append(time.perf_counter() - t)
        summary = None
        if args.profile:
            sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
            from gpu_profile import format_summary, profile

            holder = {"state": state}

            def call():
                holder["state"], out = compiled(holder["state"], batch, jax.random.key(99))
                jax.block_until_ready(out["loss"])

            summary = profile(call, calls=3, log_dir=args.profile)
            print(format_summary(summary, top=25), file=sys.stderr)
    median = float(np.median(times))
    model_flops = flops.dit_train_flops(parts.cfg, clips, texts)
    stats = jax.devices()[0].memory_stats() or {}
    result = {
        "config": args.config,
        "params": parts.cfg.param_count(),
        "tokens_per_step": int(config.packing.batch_size * config.packing.seq_len),
        "real_tokens_per_step": int(sum(clips)),
        "step_s": median,
        "compile_s": compile_s,
        "model_tflops_per_s": model_flops / median / 1e12,
        "loss": float(aux["loss"]),
        "peak_gib": stats.get("peak_bytes_in_use", 0) / 2**30,
        "overrides": overrides,
    }
    if summary is not None:
        result["profile"] = {k: v for k, v in summary.items() if k != "trace"}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
