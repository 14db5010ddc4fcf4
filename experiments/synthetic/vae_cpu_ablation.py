"""A small, CPU-sized ablation of the VAE recipe: model variants (config overrides of
configs/vae_synthetic.py, shrunk) trained with the trainer's own step and annealed schedule on one fixed set of
synthetic clips, scored with the metric `jaxsora eval-vae` reports (per-clip PSNR averaged in dB) at the
training size and at twice that size (the recipe trains at 64x64 and is evaluated at 128x128), next to the
per-clip mean colour as a baseline.

    python experiments/synthetic/vae_cpu_ablation.py --steps 300 --size 32 --frames 9 \\
        --variant 'base:' --variant 'pixel:vae.pixel_shortcut=true,vae.logvar_init=-8.0'

``--latent-noise S`` also decodes every test latent perturbed by Gaussian noise of S times each channel's
standard deviation (over the test clips), as a diffusion model's latents are slightly off, and reports the
per-clip PSNR against the clip and the perturbation's **blockiness** at the larger test size: the mean jump of
the change (perturbed minus clean decode) between neighbouring pixels across the VAE's block edges (every
``spatial_factor`` pixels), over the mean jump inside blocks. ~1: the change is smooth; >> 1: it shows as blocks.

``--shapes N`` then codes the true clips of `jaxsora eval-dit`'s first N held-out prompts (128x128, 17 frames)
and reads them back with ``describe``: shape accuracy and how many misses read as squares, after a clean round
trip and (with ``--latent-noise``) with the latents perturbed as above.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from vae_sweep import split_overrides  # noqa: E402

from jaxsora.config import load_config  # noqa: E402
from jaxsora.data.synthetic import SyntheticWorld  # noqa: E402
from jaxsora.models.vae_codec import VideoCodec  # noqa: E402
from jaxsora.train import metrics as metrics_lib  # noqa: E402
from jaxsora.train.optim import lr_at  # noqa: E402
from jaxsora.train.vae import VAEParts, train_step  # noqa: E402


def clips(seed: int, n: int, size: int, frames: int) -> np.ndarray:
    world = SyntheticWorld(seed=seed, image_fraction=0.0, min_frames=frames)
    out = [world.load(i, list(range(frames)), size, size).frames for i in range(n)]
    return np.stack(out).astype(np.float32) / 127.5 - 1.0


def per_clip_psnr(codec: VideoCodec, x: np.ndarray) -> float:
    out = []
    for i in range(0, len(x), 8):
        v = jnp.asarray(x[i : i + 8])
        y = jnp.clip(codec.decode(codec.encode(v)), -1, 1)
        out += [float(p) for p in metrics_lib.psnr(y, v)]
    return float(np.mean(out))


def perturbed(codec: VideoCodec, x: np.ndarray, sigma: float, seed: int = 0) -> tuple[float, float]:
    """(per-clip PSNR, blockiness) of decoding ``x``'s latents plus noise of ``sigma`` channel deviations."""
    zs = [codec.encode(jnp.asarray(x[i : i + 8])) for i in range(0, len(x), 8)]
    std = jnp.std(jnp.concatenate(zs), axis=(0, 1, 2, 3))
    psnr, edge, inside = [], [], []
    s = codec.cfg.spatial_factor
    for k, z in enumerate(zs):
        noise = jax.random.normal(jax.random.key(seed + k), z.shape) * std * sigma
        clean, off = codec.decode(z), codec.decode(z + noise)
        v = jnp.asarray(x[8 * k : 8 * k + 8])
        psnr += [float(p) for p in metrics_lib.psnr(jnp.clip(off, -1, 1), v)]
        jump = np.abs(np.diff(np.asarray(off - clean), axis=3))  # along width, [B, T, H, W - 1, 3]
        at_edge = (np.arange(jump.shape[3]) % s) == s - 1
        edge.append(jump[:, :, :, at_edge].mean())
        inside.append(jump[:, :, :, ~at_edge].mean())
    return float(np.mean(psnr)), float(np.mean(edge) / max(np.mean(inside), 1e-12))


def shape_reads(codec: VideoCodec, num: int, sigma: float) -> str:
    """'shapes right/asked (squares k)' after a clean round trip and, with ``sigma``, perturbed latents."""
    from jaxsora.train.dit_eval import held_out_prompts, score

    items = held_out_prompts(num, seed=2_000_003, sizes=[(128, 128)], frames=17)
    latents = [codec.encode(jnp.asarray(it["frames"][None].astype(np.float32) / 127.5 - 1.0)) for it in items]
    std = jnp.std(jnp.concatenate(latents), axis=(0, 1, 2, 3))
    cells = []
    for s in (0.0, sigma) if sigma else (0.0,):
        read: list[dict] = []
        for k, (it, z) in enumerate(zip(items, latents, strict=True)):
            z = z + jax.random.normal(jax.random.key(k), z.shape) * std * s if s else z
            score(np.asarray(codec.decode(z)[0]), it, read)
        right = sum(r["got"] is not None and r["got"]["shape"] == r["asked"]["shape"] for r in read)
        squares = sum(
            r["got"] is not None and r["got"]["shape"] == "square" != r["asked"]["shape"] for r in read
        )
        cells.append(f"{right}/{len(read)} (squares {squares})")
    return " | ".join(cells)


def mean_colour_psnr(x: np.ndarray) -> float:
    m = np.broadcast_to(x.mean(axis=(1, 2, 3), keepdims=True), x.shape)
    return float(np.mean(10 * np.log10(4.0 / np.mean((m - x) ** 2, axis=(1, 2, 3, 4)))))


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default="configs/vae_synthetic.py")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--frames", type=int, default=9)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--channels", type=int, default=16, help="vae.channels for every variant")
    parser.add_argument("--variant", action="append", required=True, help="NAME:OVERRIDES")
    parser.add_argument(
        "--latent-noise",
        type=float,
        default=0.0,
        help="also decode latents perturbed by this many channel stds",
    )
    parser.add_argument(
        "--shapes", type=int, default=0, help="read back the true clips of this many eval-dit prompts"
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="training clips, initialisation and batch order (test clips fixed)",
    )
    args = parser.parse_args()
    train_x = clips(args.seed, 256, args.size, args.frames)
    tests = {s: clips(99, 32, s, args.frames) for s in (args.size, 2 * args.size)}
    images = {s: x[:, :1] for s, x in tests.items()}  # first frames: coded exactly as images are
    head = " | ".join(f"{s}x{s} videos / first frames" for s in tests)
    big = 2 * args.size
    noisy = (
        f" latents + {args.latent_noise:g} std: {big}x{big} PSNR, blockiness |" if args.latent_noise else ""
    )
    shapes = ""
    if args.shapes:
        shapes = " 128x128 shapes read right |" + (
            f" with latents + {args.latent_noise:g} std |" if noisy else ""
        )
    print(f"| variant ({args.steps} steps, batch {args.batch}) | {head} |{noisy}{shapes} seconds |")
    print("|---|" + "---|" * (len(tests) + bool(noisy) + shapes.count("|")) + "---:|")
    base = " | ".join(f"{mean_colour_psnr(tests[s]):.2f} / {mean_colour_psnr(images[s]):.2f}" for s in tests)
    print(f"| per-clip mean colour | {base} |{' |' * (bool(noisy) + shapes.count('|'))} |", flush=True)
    for spec in args.variant:
        name, _, overrides = spec.partition(":")
        config = load_config(args.config, [f"vae.channels={args.channels}", *split_overrides(overrides)])
        parts = VAEParts(config)
        tc = config.vae_train
        state = jax.jit(lambda r, parts=parts: nn.meta.unbox(parts.init(r)))(jax.random.key(args.seed))
        fn = functools.partial(
            train_step, model=parts.model, disc=parts.disc, tx=parts.tx, dtx=parts.dtx, tc=tc, use_gan=False
        )
        step_fn = jax.jit(fn, donate_argnums=0)
        rng = np.random.default_rng(args.seed)
        t0 = time.perf_counter()
        for step in range(args.steps):
            lr = lr_at(tc.optim, step, args.steps)
            batch = jnp.asarray(train_x[rng.integers(0, len(train_x), args.batch)])
            state, _, _ = step_fn(state, batch, jax.random.key(step), np.float32(lr))
        jax.block_until_ready(state)
        seconds = time.perf_counter() - t0
        codec = VideoCodec(parts.cfg, state.ema_params)
        cells = " | ".join(
            f"{per_clip_psnr(codec, tests[s]):.2f} / {per_clip_psnr(codec, images[s]):.2f}" for s in tests
        )
        if args.latent_noise:
            psnr, blockiness = perturbed(codec, tests[big], args.latent_noise)
            cells += f" | {psnr:.2f}, {blockiness:.2f}"
        if args.shapes:
            cells += " | " + shape_reads(codec, args.shapes, args.latent_noise)
        print(f"| {name} | {cells} | {seconds:.0f} |", flush=True)


if __name__ == "__main__":
    main()
