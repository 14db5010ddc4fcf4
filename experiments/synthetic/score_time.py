"""Seconds to score held-out prompts' true clips with ``describe`` in this process and in worker processes
(``jaxsora.train.prompt_scoring.ScorePool``, what ``eval-dit`` uses), alternating, pool start-up included.

    python experiments/synthetic/score_time.py [--num 64] [--workers 0,2] [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import time


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--num", type=int, default=64, help="held-out clips (17 frames, 128x128)")
    parser.add_argument(
        "--workers", default="0,2", help="comma list of worker-process counts (0: this process)"
    )
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    # imported here, not at the top: each spawned worker imports this file as its __main__
    from jaxsora.train.dit_eval import held_out_prompts
    from jaxsora.train.prompt_scoring import ScorePool

    items = held_out_prompts(args.num, seed=2_000_003, sizes=[(128, 128)], frames=17)
    videos = [it["frames"].astype("float32") / 127.5 - 1.0 for it in items]
    print(f"{args.num} clips of 17 x 128 x 128 on {os.cpu_count()} CPU cores")
    print("| workers | seconds | shapes read right |")
    print("|---:|---:|---:|")
    for _ in range(args.repeats):
        for workers in (int(w) for w in args.workers.split(",")):
            start = time.perf_counter()
            with ScorePool(workers) as pool:
                jobs = [pool.submit(v, it["objects"]) for v, it in zip(videos, items, strict=True)]
                right = sum(job.result()[0]["shape"] for job in jobs)
            print(f"| {workers} | {time.perf_counter() - start:.2f} | {right} |", flush=True)


if __name__ == "__main__":
    main()
