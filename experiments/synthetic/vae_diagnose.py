"""Why does the VAE learn slowly? Trains model variants on one fixed in-memory set of synthetic clips for a fixed
number of steps (no pipeline, no sharding) and prints train/held-out PSNR, next to two baselines: the
per-clip mean colour, and a plain per-frame 2D convolutional autoencoder with the same 8x spatial compression.

    python experiments/synthetic/vae_diagnose.py --steps 400 --size 64 --frames 9
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxsora.data.synthetic import SyntheticWorld
from jaxsora.models.vae import VAE, VAEConfig


class PlainAE(nn.Module):
    """Per-frame 2D conv autoencoder: 3 stride-2 convs down to 16 channels, nearest-upsample convs back."""

    ch: int = 64

    @nn.compact
    def __call__(self, x, sample=False):
        b, t, h, w, c = x.shape
        y = x.reshape(b * t, h, w, c)
        y = nn.relu(nn.Conv(self.ch, (3, 3))(y))
        for mult in (1, 2, 4):
            y = nn.relu(nn.Conv(self.ch * mult, (3, 3), strides=2)(y))
            y = nn.relu(nn.Conv(self.ch * mult, (3, 3))(y))
        z = nn.Conv(16, (3, 3))(y)
        y = nn.relu(nn.Conv(self.ch * 4, (3, 3))(z))
        for mult in (4, 2, 1):
            y = jax.image.resize(y, (y.shape[0], y.shape[1] * 2, y.shape[2] * 2, y.shape[3]), "nearest")
            y = nn.relu(nn.Conv(self.ch * mult, (3, 3))(y))
            y = nn.relu(nn.Conv(self.ch * mult, (3, 3))(y))
        y = nn.Conv(3, (3, 3))(y)
        return y.reshape(b, t, h, w, 3), z, z


def clips(seed: int, n: int, size: int, frames: int) -> np.ndarray:
    world = SyntheticWorld(seed=seed, image_fraction=0.0, min_frames=frames)
    out = [world.load(i, list(range(frames)), size, size).frames for i in range(n)]
    return np.stack(out).astype(np.float32) / 127.5 - 1.0


def psnr(a, b):
    return float(10 * jnp.log10(4.0 / jnp.mean((a - b) ** 2)))


def train(model, train_x, test_x, steps: int, lr: float, batch: int):
    params = model.init({"params": jax.random.key(0), "noise": jax.random.key(1)}, train_x[:1])["params"]
    params = nn.meta.unbox(params)
    tx = optax.adam(optax.warmup_cosine_decay_schedule(0, lr, 50, steps, lr * 0.1))
    opt = tx.init(params)

    @jax.jit
    def step(params, opt, x):
        def loss_fn(p):
            r, _, _ = model.apply({"params": p}, x, sample=False)
            return jnp.mean(jnp.abs(r - x)) + jnp.mean((r - x) ** 2)

        loss, g = jax.value_and_grad(loss_fn)(params)
        u, opt = tx.update(g, opt, params)
        return optax.apply_updates(params, u), opt, loss

    recon = jax.jit(lambda p, x: model.apply({"params": p}, x, sample=False)[0])
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    curve = []
    for i in range(steps):
        idx = rng.integers(0, len(train_x), batch)
        params, opt, loss = step(params, opt, jnp.asarray(train_x[idx]))
        if (i + 1) % max(1, steps // 4) == 0:
            curve.append(psnr(recon(params, jnp.asarray(test_x[:16])), test_x[:16]))
    jax.block_until_ready(params)
    return curve, time.perf_counter() - t0


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--frames", type=int, default=9)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument(
        "--sweep", action="store_true", help="instead of the variants: GroupNorm + shortcuts at lr x batch"
    )
    args = parser.parse_args()
    train_x = clips(0, 512, args.size, args.frames)
    test_x = clips(99, 64, args.size, args.frames)
    mean_colour = test_x.mean(axis=(1, 2, 3), keepdims=True)
    print(f"baseline: per-clip mean colour PSNR {psnr(jnp.asarray(mean_colour), test_x):.2f} dB", flush=True)
    base = VAEConfig(dtype="float32")
    variants = {
        "plain 2D conv AE (64 ch)": PlainAE(),
        "VAE rms, no shortcuts": VAE(dataclasses.replace(base, shortcut=False)),
        "VAE rms + shortcuts": VAE(base),
        "VAE group norm, no shortcuts": VAE(dataclasses.replace(base, norm="group", shortcut=False)),
        "VAE group norm + shortcuts": VAE(dataclasses.replace(base, norm="group")),
    }
    if args.sweep:
        model = VAE(dataclasses.replace(base, norm="group"))
        print(
            f"| GroupNorm + shortcuts, {args.steps} steps | held-out PSNR at 1/4, 1/2, 3/4, end | seconds |"
        )
        print("|---|---|---:|")
        for lr in (1e-3, 2e-3, 4e-3):
            for batch in (8, 32):
                curve, seconds = train(model, train_x, test_x, args.steps, lr, batch)
                print(
                    f"| lr {lr:g}, batch {batch} | {' / '.join(f'{c:.1f}' for c in curve)} | {seconds:.0f} |",
                    flush=True,
                )
        return
    print(f"| variant ({args.steps} steps, lr {args.lr:g}) | held-out PSNR at 1/4, 1/2, 3/4, end | seconds |")
    print("|---|---|---:|")
    for name, model in variants.items():
        curve, seconds = train(model, train_x, test_x, args.steps, args.lr, args.batch)
        print(f"| {name} | {' / '.join(f'{c:.1f}' for c in curve)} | {seconds:.0f} |", flush=True)


if __name__ == "__main__":
    main()
