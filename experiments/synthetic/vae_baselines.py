"""What does `jaxsora eval-vae`'s metric reward? Per-clip PSNR averaged in dB of a trivial codec (each clip
replaced by its mean colour) on the held-out clips eval-vae uses (same pipeline, seed, sizes) and on
vae_sweep.py's held-out set; and the XLA-counted FLOPs of one training step of config variants.

    python experiments/synthetic/vae_baselines.py --num 256 \\
        --flops 'recipe:' --flops 'old:vae.patch_size=1,vae.channel_mult=(1,2,4,4),...'
"""

from __future__ import annotations

import argparse
import functools
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from vae_sweep import heldout, split_overrides  # noqa: E402

from jaxsora.config import load_config  # noqa: E402
from jaxsora.data.pipeline import clip_dataset, make_source  # noqa: E402
from jaxsora.train.vae import VAEParts, train_step  # noqa: E402
from jaxsora.train.vae_eval import heldout_config  # noqa: E402


def mean_colour_psnr(x: np.ndarray) -> float:
    m = x.mean(axis=(0, 1, 2), keepdims=True)
    return float(10 * np.log10(4.0 / np.mean((m - x) ** 2)))


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default="configs/vae_synthetic.py")
    parser.add_argument("--num", type=int, default=256)
    parser.add_argument("--seed", type=int, default=1_000_003, help="eval-vae's held-out seed")
    parser.add_argument("--flops", action="append", default=[], help="NAME:OVERRIDES (16x17x64x64 batch)")
    args = parser.parse_args()
    config = heldout_config(load_config(args.config, ["data.max_pixels=16384"]), args.seed)
    ds = clip_dataset(make_source(config.data), config, shard_index=0, shard_count=1, num_epochs=1)
    scores = {"images": [], "videos": []}
    for element in ds:
        x = element["video"].astype(np.float32) / 127.5 - 1.0
        scores["images" if x.shape[0] == 1 else "videos"].append(mean_colour_psnr(x))
        if sum(map(len, scores.values())) >= args.num:
            break
    every = scores["images"] + scores["videos"]
    print("| held-out set | clips | per-clip mean colour PSNR: all / images / videos |")
    print("|---|---:|---|")
    print(
        f"| eval-vae (seed {args.seed}, native aspect, 128x128 px) | {len(every)} | {np.mean(every):.2f} / "
        f"{np.mean(scores['images']):.2f} / {np.mean(scores['videos']):.2f} |"
    )
    videos, images = heldout(2_000_003, 64, 128)
    v = [mean_colour_psnr(x) for x in videos]
    i = [mean_colour_psnr(x) for x in images]
    print(
        f"| vae_sweep.py (seed 2000003, 128x128 square) | {len(v) + len(i)} | {np.mean(v + i):.2f} / "
        f"{np.mean(i):.2f} / {np.mean(v):.2f} |",
        flush=True,
    )
    if args.flops:
        print("\n| variant | TFLOP per training step (16 x 17 x 64x64) | parameters (M) |\n|---|---:|---:|")
    for spec in args.flops:
        name, _, overrides = spec.partition(":")
        cfg = load_config(args.config, split_overrides(overrides))
        parts = VAEParts(cfg)
        state = jax.eval_shape(lambda r, parts=parts: nn.meta.unbox(parts.init(r)), jax.random.key(0))
        fn = functools.partial(
            train_step,
            model=parts.model,
            disc=parts.disc,
            tx=parts.tx,
            dtx=parts.dtx,
            tc=cfg.vae_train,
            use_gan=False,
        )
        video = jax.ShapeDtypeStruct((16, 17, 64, 64, 3), jnp.float32)
        cost = jax.jit(fn).lower(state, video, jax.random.key(0), np.float32(0)).cost_analysis()
        params = sum(a.size for a in jax.tree.leaves(state.params))
        print(f"| {name} | {cost['flops'] / 1e12:.2f} | {params / 1e6:.1f} |", flush=True)


if __name__ == "__main__":
    main()
