"""The host side of `jaxsora encode` alone: clips a second and this process's CPU time a clip, with a stand-in
encoder that does no VAE work (a jitted function returning latents of the right shapes), so what is measured
is what the encode's main process does around the device: taking each clip from the data workers, stacking
and padding batches, fetching latents, serialising and writing records, channel statistics.

    python experiments/data/encode_host.py [--clips 1000] [--workers 2] [--profile 12]

The clips are configs/small.py's (native aspect, ~128x128, 17 frames or images); the latents
configs/vae_synthetic.py's shapes (8x8 spatial, 4x temporal, 16 channels). ``--profile N`` prints the N
functions of this process with the most time of their own (cProfile). On a GPU host the real encoder runs
beside this work on the device; where this rate is below the recipe's (~280-300 clips/s in runs u-w after
their compiles), the host is what bounds the encode.
"""

from __future__ import annotations

import argparse
import cProfile
import pathlib
import pstats
import shutil
import time


class HostOnlyCodec:
    """``encode`` returns noise of the VAE's latent shape (as incompressible as real latents), offset by a
    value read from the pixels, so the batch is still put on the device and read."""

    def __init__(self, cfg):
        import jax
        import jax.numpy as jnp

        self.cfg = cfg
        f, s, c = cfg.temporal_factor, cfg.spatial_factor, cfg.latent_channels

        def fake(x):
            b, t, h, w, _ = x.shape
            level = jnp.mean(x[:, :1, :1, :1, :1].astype(jnp.float32))
            shape = (b, 1 + (t - 1) // f, h // s, w // s, c)
            mean = jax.random.normal(jax.random.key(0), shape) + level
            return mean, jnp.exp(0.1 * jax.random.normal(jax.random.key(1), shape))

        self._fake = jax.jit(fake)

    def precompile_encode(self, pool, shape, dtype) -> None:
        pass

    def encode(self, video, *, chunk_latents=0, with_std=False):
        mean, std = self._fake(video)
        return (mean, std) if with_std else mean


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clips", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2, help="data worker processes (configs/small.py: 12)")
    parser.add_argument("--profile", type=int, default=0, help="print the top N functions by own time")
    parser.add_argument("--out", default="/tmp/encode_host")
    args = parser.parse_args()
    from jaxsora.config import load_config
    from jaxsora.encode import encode_dataset
    from jaxsora.train.vae import vae_config

    config = load_config("configs/small.py", [f"data.num_workers={args.workers}"])
    codec = HostOnlyCodec(vae_config(load_config("configs/vae_synthetic.py")))
    out = pathlib.Path(args.out)
    # the first run compiles the stand-in for every batch shape the second meets (the same clips)
    for name, clips in (("warm-up", args.clips), ("measured", args.clips)):
        shutil.rmtree(out, ignore_errors=True)
        profile = cProfile.Profile(time.thread_time) if args.profile and name == "measured" else None
        start, cpu = time.perf_counter(), time.process_time()
        if profile:
            profile.enable()
        meta = encode_dataset(codec, config, out, part_size=2000, max_clips=clips, progress=False)
        if profile:
            profile.disable()
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
        print(
            f"{name}: {meta['clips']} clips in {wall:.1f} s, {meta['clips'] / wall:.0f} clips/s, "
            f"this process {1000 * cpu / meta['clips']:.2f} ms of CPU a clip ({args.workers} workers)",
            flush=True,
        )
    if args.profile:
        pstats.Stats(profile).sort_stats("tottime").print_stats(args.profile)


if __name__ == "__main__":
    main()
