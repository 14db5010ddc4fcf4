"""Host time to collate one VAE training batch in the main process: float32 in [-1, 1] (the default) against
uint8 pixels (what the VAE trainer now asks for, converting on the device), and the bytes each sends to it.

    python experiments/data/collate_cost.py [--batch 16 --frames 17 --size 64 --repeats 50]

The bucket batcher runs in the training process after the Grain workers, so its per-batch time is spent on
the critical path of every step (~45 ms per batch in the recipe's GPU run, which waited 47 s of 140 for data).
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from jaxsora.data.buckets import collate  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--frames", type=int, default=17)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--repeats", type=int, default=50)
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)
    shape = (args.frames, args.size, args.size, 3)
    elements = [{"video": rng.integers(0, 256, shape, dtype=np.uint8)} for _ in range(args.batch)]
    print(f"batch {args.batch} x {args.frames} x {args.size}x{args.size}, median of {args.repeats}")
    for dtype in ("float32", "uint8"):
        times = []
        for _ in range(args.repeats + 1):
            t0 = time.perf_counter()
            out = collate(elements, dtype)
            times.append(time.perf_counter() - t0)
        ms = 1000 * float(np.median(times[1:]))
        print(f"  {dtype:8s} {ms:7.2f} ms per batch, {out['video'].nbytes / 2**20:6.1f} MiB to the device")


if __name__ == "__main__":
    main()
