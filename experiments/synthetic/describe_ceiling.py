"""How well `describe` reads the eval-dit prompts' true clips, per asked shape and star size, under blur.

    python experiments/synthetic/describe_ceiling.py [--num 64] [--size 128x128] [--blur 0,0.5,1,1.5]

The same 64 held-out prompts as `jaxsora eval-dit` (seed 2000003, 17 frames), scored by the same `score` on
the rendered clips themselves, then on the clips blurred with a Gaussian of each ``--blur`` sigma (pixels;
spatial only). This is the ceiling of the scoring itself, below the VAE's round trip that eval-dit reports.
CPU only, about 15 seconds.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from jaxsora.sample import parse_size  # noqa: E402
from jaxsora.train.dit_eval import _by_shape, held_out_prompts, score  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--num", type=int, default=64)
    p.add_argument("--seed", type=int, default=2_000_003)
    p.add_argument("--size", default="128x128")
    p.add_argument("--blur", default="0,0.5,1,1.5", help="Gaussian sigmas in pixels, comma-separated")
    args = p.parse_args(argv)
    from scipy.ndimage import gaussian_filter

    items = held_out_prompts(args.num, seed=args.seed, sizes=[parse_size(args.size)], frames=17)
    print("| blur sigma (px) | shape accuracy | per asked shape | stars per asked size |")
    print("|---:|---:|---|---|")
    for sigma in (float(s) for s in args.blur.split(",")):
        read: list[dict] = []
        for it in items:
            video = it["frames"].astype(np.float32)
            if sigma > 0:
                video = gaussian_filter(video, (0, sigma, sigma, 0))
            score(np.clip(np.rint(video), 0, 255).astype(np.uint8), it, read)
        right = sum(r["got"] is not None and r["got"]["shape"] == r["asked"]["shape"] for r in read)
        shapes = ", ".join(f"{k} {v}" for k, v in _by_shape(read).items())
        by_size = ", ".join(f"{k} {v}" for k, v in _by_shape(read, by_size=True).get("star", {}).items())
        print(f"| {sigma:g} | {right} / {len(read)} | {shapes} | {by_size} |")


if __name__ == "__main__":
    main()
