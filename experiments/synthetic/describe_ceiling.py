"""How well `describe` reads the eval-dit prompts' true clips, per asked shape and star size, under blur.

    python experiments/synthetic/describe_ceiling.py [--num 64] [--size 128x128] [--blur 0,0.5,1,1.5]
        [--blocks 0.25,0.5]

The same 64 held-out prompts as `jaxsora eval-dit` (seed 2000003, 17 frames), scored by the same `score` on
the rendered clips themselves, then on the clips blurred with a Gaussian of each ``--blur`` sigma (pixels;
spatial only), and on clips mixed with their 8x8-pixel block means by each ``--blocks`` weight (the blocky look
of a decoder whose pixel shortcut, `vae.pixel_shortcut`, is not cancelled at edges). This is the ceiling of the
scoring itself, below the VAE's round trip that eval-dit reports. Besides the reads (per asked shape, per star
size, and per the object's visibility: ``partial`` is never wholly in the frame) it gives the median score of
the asked shape per shape (describe's soft IoU with the shape's template), the reference for `ab_summary.py
--shapes` on generated samples. CPU only, about 15 seconds per row.
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import sys

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from jaxsora.sample import parse_size  # noqa: E402
from jaxsora.train.dit_eval import _by_shape, _by_status, held_out_prompts, score  # noqa: E402

BLOCK = 8  # the VAE's spatial factor: its pixel shortcut's blocks


def block_mix(video: np.ndarray, weight: float) -> np.ndarray:
    """``video`` (float ``[T, H, W, 3]``) mixed with its BLOCK x BLOCK block means (edge blocks partial)."""
    t, h, w, c = video.shape
    ph, pw = -h % BLOCK, -w % BLOCK
    padded = np.pad(video, ((0, 0), (0, ph), (0, pw), (0, 0)), mode="edge")
    means = padded.reshape(t, (h + ph) // BLOCK, BLOCK, (w + pw) // BLOCK, BLOCK, c).mean((2, 4))
    blocks = np.repeat(np.repeat(means, BLOCK, 1), BLOCK, 2)[:, :h, :w]
    return (1 - weight) * video + weight * blocks


def _median_scores(read: list[dict]) -> str:
    by_shape: dict[str, list[float]] = {}
    for r in read:
        if r["got"] is not None and r["asked"]["shape"] in r["got"]["shape_scores"]:
            by_shape.setdefault(r["asked"]["shape"], []).append(r["got"]["shape_scores"][r["asked"]["shape"]])
    return ", ".join(f"{k} {statistics.median(v):.2f}" for k, v in sorted(by_shape.items()))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--num", type=int, default=64)
    p.add_argument("--seed", type=int, default=2_000_003)
    p.add_argument("--size", default="128x128")
    p.add_argument("--blur", default="0,0.5,1,1.5", help="Gaussian sigmas in pixels, comma-separated")
    p.add_argument(
        "--blocks", default="", help="weights of the 8x8 block means, comma-separated (e.g. 0.25,0.5)"
    )
    args = p.parse_args(argv)
    from scipy.ndimage import gaussian_filter

    items = held_out_prompts(args.num, seed=args.seed, sizes=[parse_size(args.size)], frames=17)
    rows = [(f"blur {float(s):g} px", float(s), 0.0) for s in args.blur.split(",") if s.strip()]
    rows += [(f"blocks {float(b):g}", 0.0, float(b)) for b in args.blocks.split(",") if b.strip()]
    print(
        "| clips | shape accuracy | per asked shape | stars per asked size | per visibility in the clip "
        "| median score of the asked shape |"
    )
    print("|---|---:|---|---|---|---|")
    for name, sigma, weight in rows:
        read: list[dict] = []
        for it in items:
            video = it["frames"].astype(np.float32)
            if sigma > 0:
                video = gaussian_filter(video, (0, sigma, sigma, 0))
            if weight > 0:
                video = block_mix(video, weight)
            score(np.clip(np.rint(video), 0, 255).astype(np.uint8), it, read)
        right = sum(r["got"] is not None and r["got"]["shape"] == r["asked"]["shape"] for r in read)
        shapes = ", ".join(f"{k} {v}" for k, v in _by_shape(read).items())
        by_size = ", ".join(f"{k} {v}" for k, v in _by_shape(read, by_size=True).get("star", {}).items())
        status = ", ".join(f"{k} {v}" for k, v in _by_status(read).items())
        print(
            f"| {name} | {right} / {len(read)} | {shapes} | {by_size} | {status} | {_median_scores(read)} |"
        )


if __name__ == "__main__":
    main()
