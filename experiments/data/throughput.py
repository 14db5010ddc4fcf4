"""Clips per second of the clip pipeline (source -> sized, tokenized, shape-bucketed batches).

    python experiments/data/throughput.py --config configs/tiny.py [--seconds 30] [--config.data.num_threads=4]

Prints one markdown table row per setting of (threads, worker processes); the README's figure comes from here.
Warm-up (the first batches, while prefetch buffers fill) is excluded.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time

from jaxsora.config import load_config, split_override_args
from jaxsora.data.pipeline import batched_dataset, make_source


def measure(config, seconds: float, warmup_batches: int = 3) -> dict[str, float]:
    source = make_source(config.data)
    it = iter(batched_dataset(source, config, shard_index=0, shard_count=1))
    for _ in range(warmup_batches):
        next(it)
    clips = frames = pixels = 0
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        batch = next(it)
        b, t, h, w, _ = batch["video"].shape
        clips, frames, pixels = clips + b, frames + b * t, pixels + b * t * h * w
    it.close()
    return {"clips/s": clips / elapsed, "frames/s": frames / elapsed, "Mpixel/s": pixels / elapsed / 1e6}


def main() -> None:
    overrides, rest = split_override_args(sys.argv[1:])
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default="configs/tiny.py")
    parser.add_argument("--seconds", type=float, default=30.0, help="measured time per setting")
    parser.add_argument(
        "--threads", default="", help="comma list of data.num_threads to sweep (default: config's)"
    )
    parser.add_argument(
        "--workers", default="", help="comma list of data.num_workers to sweep (default: config's)"
    )
    args = parser.parse_args(rest)
    base = load_config(args.config, overrides)
    threads = [int(x) for x in args.threads.split(",")] if args.threads else [base.data.num_threads]
    workers = [int(x) for x in args.workers.split(",")] if args.workers else [base.data.num_workers]
    print(
        f"source={base.data.source} max_pixels={base.data.max_pixels} max_frames={base.data.max_frames} "
        f"fps={base.data.fps} on {os.cpu_count()} CPU cores, {args.seconds:g} s per setting"
    )
    print("| threads | workers | clips/s | frames/s | Mpixel/s |")
    print("|---:|---:|---:|---:|---:|")
    for n_threads, n_workers in itertools.product(threads, workers):
        config = load_config(
            args.config, [*overrides, f"data.num_threads={n_threads}", f"data.num_workers={n_workers}"]
        )
        r = measure(config, args.seconds)
        print(
            f"| {n_threads} | {n_workers} | {r['clips/s']:.1f} | {r['frames/s']:.0f} | {r['Mpixel/s']:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
