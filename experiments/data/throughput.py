"""Clips per second of the clip pipeline (source -> sized, tokenized, shape-bucketed batches).

    python experiments/data/throughput.py --config configs/tiny.py [--seconds 30] [--config.data.num_threads=4]
    python experiments/data/throughput.py --config configs/vae_synthetic.py --video-dtype uint8 \
        --workers 12,16 --buffers 1,8    # the VAE trainer's pipeline

Prints one markdown table row per setting of (threads, worker processes, per-worker buffer), with the seconds
to the first batch (worker start-up) and this process's CPU share while measuring; the README's figure comes
from here. Warm-up (the first batches, while prefetch buffers fill) is excluded from the rates.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time

from jaxsora.config import load_config, split_override_args
from jaxsora.data.pipeline import batched_dataset, make_source


def measure(
    config, seconds: float, warmup_batches: int = 3, video_dtype: str = "float32"
) -> dict[str, float]:
    t0 = time.perf_counter()
    source = make_source(config.data)
    it = iter(batched_dataset(source, config, shard_index=0, shard_count=1, video_dtype=video_dtype))
    next(it)
    first = time.perf_counter() - t0
    for _ in range(warmup_batches - 1):
        next(it)
    clips = frames = pixels = 0
    start, cpu0 = time.perf_counter(), time.process_time()
    while (elapsed := time.perf_counter() - start) < seconds:
        batch = next(it)
        b, t, h, w, _ = batch["video"].shape
        clips, frames, pixels = clips + b, frames + b * t, pixels + b * t * h * w
    cpu = (time.process_time() - cpu0) / elapsed
    it.close()
    return {
        "clips/s": clips / elapsed,
        "frames/s": frames / elapsed,
        "Mpixel/s": pixels / elapsed / 1e6,
        "first_s": first,
        "main_cpu": cpu,
    }


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
    parser.add_argument(
        "--buffers", default="", help="comma list of data.worker_buffer_size to sweep (default: config's)"
    )
    parser.add_argument(
        "--video-dtype",
        default="float32",
        choices=("float32", "uint8"),
        help="uint8: as train-vae and encode",
    )
    args = parser.parse_args(rest)
    base = load_config(args.config, overrides)
    threads = [int(x) for x in args.threads.split(",")] if args.threads else [base.data.num_threads]
    workers = [int(x) for x in args.workers.split(",")] if args.workers else [base.data.num_workers]
    buffers = [int(x) for x in args.buffers.split(",")] if args.buffers else [base.data.worker_buffer_size]
    print(
        f"source={base.data.source} max_pixels={base.data.max_pixels} max_frames={base.data.max_frames} "
        f"fps={base.data.fps} on {os.cpu_count()} CPU cores, {args.seconds:g} s per setting"
    )
    print("| threads | workers | buffer | clips/s | frames/s | Mpixel/s | first batch s | main process CPU |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n_threads, n_workers, n_buffer in itertools.product(threads, workers, buffers):
        setting = [f"data.num_threads={n_threads}", f"data.num_workers={n_workers}"]
        config = load_config(args.config, [*overrides, *setting, f"data.worker_buffer_size={n_buffer}"])
        r = measure(config, args.seconds, video_dtype=args.video_dtype)
        print(
            f"| {n_threads} | {n_workers} | {n_buffer} | {r['clips/s']:.1f} | {r['frames/s']:.0f} | "
            f"{r['Mpixel/s']:.2f} | {r['first_s']:.1f} | {r['main_cpu']:.0%} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
