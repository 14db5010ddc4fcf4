"""Caption lengths in byte tokens (BOS and EOS included) of the synthetic world, against ``text.max_len``, and
the share of the DiT's text-side work spent on padding.

    python experiments/data/caption_lengths.py --config configs/small.py [--clips 2000]

Every caption row is ``text.max_len`` long however short the caption (packing keeps one fixed row per clip),
and the DiT projects every row position to K/V in every block; this prints how much of that is padding.
"""

from __future__ import annotations

import argparse

import numpy as np

from jaxsora.config import load_config
from jaxsora.data.synthetic import SyntheticWorld


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/small.py")
    p.add_argument("--clips", type=int, default=2000)
    args = p.parse_args(argv)
    config = load_config(args.config)
    # The world as the pipeline builds it (make_source), and each clip loaded over the frames the pipeline
    # takes (captions describe the motion over them: one frame would give the short, motionless caption).
    world = SyntheticWorld(**{**config.data.synthetic.to_dict(), "num_clips": max(args.clips, 1)})
    max_frames = config.data.max_frames

    def caption_tokens(i: int) -> int:
        frames = list(range(min(world.info(i).num_frames, max_frames)))
        return len(world.load(i, frames, 64, 64).caption.encode()) + 2

    lengths = np.array([caption_tokens(i) for i in range(args.clips)])
    max_len = config.text.max_len
    print(
        f"{args.clips} captions, byte tokens incl. BOS/EOS: mean {lengths.mean():.1f}, "
        f"p50 {np.percentile(lengths, 50):.0f}, p90 {np.percentile(lengths, 90):.0f}, "
        f"p99 {np.percentile(lengths, 99):.0f}, max {lengths.max()}"
    )
    print(
        f"text.max_len {max_len}: {100 * (1 - lengths.mean() / max_len):.0f}% of every caption row is padding; "
        f"{np.mean(lengths > max_len) * 100:.2f}% of captions are longer than the row"
    )


if __name__ == "__main__":
    main()
