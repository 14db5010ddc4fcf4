"""Which VAE recipe learns most in a fixed time? Trains config variants one after another, each for the same
wall-clock seconds of training (compilation timed apart, not counted), on the real clip pipeline (one iterator
shared by variants with the same data settings), with the trainer's own loss, step and time-annealed learning
rate; then scores each on held-out clips at 128x128 (17-frame videos and images, square crops, a seed neither
training nor `jaxsora eval-vae` uses), with the EMA and the raw weights.

    python experiments/synthetic/vae_sweep.py --seconds 60 \\
        --variant 'base:' --variant 'p2:vae.patch_size=2,vae.channel_mult=(1,2,4),vae.temporal_down=(True,True)'

A variant is NAME:OVERRIDES, overrides comma-separated outside brackets (`--config.` keys without the prefix).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import functools
import json
import re
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxsora.config import load_config
from jaxsora.data.pipeline import batched_dataset, make_source
from jaxsora.data.synthetic import SyntheticWorld
from jaxsora.models.vae_codec import VideoCodec
from jaxsora.train import metrics as metrics_lib
from jaxsora.train.optim import lr_at
from jaxsora.train.vae import VAEParts, expected_batch_shapes, train_step


def split_overrides(text: str) -> list[str]:
    return [p.strip() for p in re.split(r",(?![^()]*\))", text) if p.strip()]


def heldout(seed: int, num: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    world = SyntheticWorld(seed=seed, image_fraction=0.25, min_frames=17)
    videos, images = [], []
    for i in range(num):
        info = world.info(i)
        frames = [0] if info.num_frames == 1 else list(range(17))
        clip = world.load(i, frames, size, size).frames.astype(np.float32) / 127.5 - 1.0
        (images if len(frames) == 1 else videos).append(clip)
    return np.stack(videos), np.stack(images)


def score(codec: VideoCodec, clips: np.ndarray, batch: int) -> list[float]:
    out = []
    for i in range(0, len(clips), batch):
        x = jnp.asarray(clips[i : i + batch])
        y = jnp.clip(codec.decode(codec.encode(x)), -1, 1)
        out += [float(v) for v in metrics_lib.psnr(y, x)]
    return out


def run_variant(name, config, data_iter, seconds, held, log_every=100):
    parts = VAEParts(config)
    tc = config.vae_train
    state = jax.jit(lambda r: nn.meta.unbox(parts.init(r)))(jax.random.key(config.seed))
    fn = functools.partial(
        train_step, model=parts.model, disc=parts.disc, tx=parts.tx, dtx=parts.dtx, tc=tc, use_gan=False
    )
    step_fn = jax.jit(fn, donate_argnums=0)
    rng = jax.random.key(1)
    t0 = time.perf_counter()

    def lower(video):
        return step_fn.lower(state, video, rng, np.float32(0))

    with concurrent.futures.ThreadPoolExecutor(4) as pool:  # both shapes at once, as the trainer does
        futures = {
            s: pool.submit(lambda s=s: lower(jax.ShapeDtypeStruct(s, jnp.float32)).compile())
            for s in expected_batch_shapes(config)
        }
        compiled = {s: f.result() for s, f in futures.items()}
    compile_s = time.perf_counter() - t0
    big = max(compiled, key=lambda s: np.prod(s))
    flops = (compiled[big].cost_analysis() or {}).get("flops", float("nan"))
    batch = next(data_iter)
    step, wait, curve = 0, 0.0, []
    t_start = time.perf_counter()
    while True:
        elapsed = time.perf_counter() - t_start
        if elapsed >= seconds:
            break
        lr = lr_at(tc.optim, step, tc.steps, progress=elapsed / seconds)
        video = jnp.asarray(batch["video"])
        state, m, _ = compiled[video.shape](state, video, jax.random.fold_in(rng, step), np.float32(lr))
        step += 1
        t1 = time.perf_counter()
        batch = next(data_iter)
        wait += time.perf_counter() - t1
        if step % log_every == 0:
            curve.append(round(float(m["psnr"]), 2))
    jax.block_until_ready(state)
    train_s = time.perf_counter() - t_start
    result = {
        "variant": name,
        "compile_s": round(compile_s, 1),
        "tflop_per_step": round(flops / 1e12, 2),  # of the larger (video) batch
        "steps": step,
        "steps_per_s": round(step / train_s, 2),
        "data_wait_s": round(wait, 1),
        "train_psnr_curve": curve,
    }
    for which in ("ema", "raw"):
        params = state.ema_params if which == "ema" else state.params
        codec = VideoCodec(parts.cfg, params)
        v = score(codec, held[0], 8)
        i = score(codec, held[1], 16)
        result[f"{which}_videos"] = round(float(np.mean(v)), 2)
        result[f"{which}_images"] = round(float(np.mean(i)), 2)
        result[f"{which}_all"] = round(float(np.mean(v + i)), 2)
    return result


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default="configs/vae_synthetic.py")
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--variant", action="append", required=True, help="NAME:OVERRIDES")
    parser.add_argument("--heldout", type=int, default=64, help="held-out clips (about 1/4 images)")
    parser.add_argument("--seed", type=int, default=2_000_003, help="held-out synthetic-world seed")
    parser.add_argument("--out", default="", help="also write the results as JSON lines here")
    args = parser.parse_args()
    held = heldout(args.seed, args.heldout, 128)
    print(f"held-out: {len(held[0])} videos, {len(held[1])} images at 128x128", flush=True)
    iterators = {}
    rows = []
    for spec in args.variant:
        name, _, overrides = spec.partition(":")
        config = load_config(args.config, split_overrides(overrides))
        key = json.dumps(config.data.to_dict(), sort_keys=True, default=str)
        if key not in iterators:
            iterators[key] = iter(batched_dataset(make_source(config.data), config))
        row = run_variant(name, config, iterators[key], args.seconds, held)
        rows.append(row)
        print(json.dumps(row), flush=True)
        if args.out:
            with open(args.out, "a") as f:
                f.write(json.dumps({**row, "overrides": overrides, "seconds": args.seconds}) + "\n")
    for it in iterators.values():
        it.close()
    print(
        f"\n| variant | TFLOP/step | compile s | steps in {args.seconds:g} s | steps/s | data wait s | "
        "held-out PSNR EMA (videos/images/all) | raw all |"
    )
    print("|---|---:|---:|---:|---:|---:|---|---:|")
    for r in rows:
        print(
            f"| {r['variant']} | {r['tflop_per_step']} | {r['compile_s']} | {r['steps']} | {r['steps_per_s']} | "
            f"{r['data_wait_s']} | {r['ema_videos']} / {r['ema_images']} / {r['ema_all']} | {r['raw_all']} |"
        )


if __name__ == "__main__":
    main()
