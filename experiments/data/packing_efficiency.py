"""Packing efficiency (real tokens / all token slots) of NaViT-style packing on the default synthetic mixture.

    python experiments/data/packing_efficiency.py --config configs/tiny.py [--clips 1000] [--rounds 20]
        [--seq-lens 256,512,1024,2048] [--bins 1,4,16] [--config.packing.max_clips_per_pack=64]

The clip geometries are the real ones: the clip pipeline (``clip_dataset`` on ``make_source(config.data)``)
renders ``--clips`` clips and each clip's (T, H, W) is mapped to its latent shape with the config's VAE
factors, ``[1 + (T - 1) / f_t, H / f_s, W / f_s, C]``, filled with random values (no VAE is run). Those
latent records are then packed by ``packed_dataset`` (repeating, so every measured round is a full one) and
the efficiency over ``--rounds`` rounds of ``num_bins`` packs is printed for each (seq_len, num_bins).
"""

from __future__ import annotations

import argparse
import collections
import sys
import time

import grain
import numpy as np

from jaxsora import tokenizer
from jaxsora.config import load_config, split_override_args
from jaxsora.data import packing
from jaxsora.data.pipeline import clip_dataset, make_source


def vae_factors(config) -> tuple[int, int]:
    """(temporal, spatial) compression of ``config.vae``."""
    return 2 ** sum(bool(d) for d in config.vae.temporal_down), 2 ** (len(config.vae.channel_mult) - 1)


def clip_geometries(config, count: int) -> list[tuple[int, int, int]]:
    """(T, H, W) of the first ``count`` clips the clip pipeline yields."""
    ds = clip_dataset(make_source(config.data), config, shard_index=0, shard_count=1, num_epochs=1)
    ds = ds[:count].to_iter_dataset(grain.ReadOptions(num_threads=max(config.data.num_threads, 1)))
    return [tuple(int(s) for s in e["video"].shape[:3]) for e in ds if "video" in e]


def latent_records(config, geometries, seed: int = 0) -> list[dict]:
    """Random latent records with the shapes the VAE would give those clips (and a dummy caption)."""
    f_t, f_s = vae_factors(config)
    rng = np.random.default_rng(seed)
    tokens, mask = tokenizer.encode("a clip", config.text.max_len)
    records = []
    for t, h, w in geometries:
        if (t - 1) % f_t or h % f_s or w % f_s:
            raise ValueError(f"clip geometry {(t, h, w)} does not fit the VAE factors (t={f_t}, s={f_s})")
        shape = (1 + (t - 1) // f_t, h // f_s, w // f_s, config.vae.latent_channels)
        records.append({"mean": rng.standard_normal(shape, np.float32), "tokens": tokens, "mask": mask})
    return records


def measure(config, records, rounds: int) -> tuple[float, float]:
    """(efficiency, mean clips per pack) over ``rounds`` full rounds of packs."""
    ds = packing.packed_dataset(
        grain.MapDataset.source(records), config, shard_index=0, shard_count=1, batch_size=0
    )
    it = iter(ds)
    packs = [next(it) for _ in range(rounds * config.packing.num_bins)]
    clips = np.mean([np.count_nonzero(p["text_segment_ids"]) for p in packs])
    return packing.efficiency(packs), float(clips)


def main() -> None:
    overrides, rest = split_override_args(sys.argv[1:])
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default="configs/tiny.py")
    parser.add_argument("--clips", type=int, default=1000, help="clips rendered for their geometry")
    parser.add_argument("--rounds", type=int, default=20, help="packing rounds measured per setting")
    parser.add_argument("--seq-lens", default="", help="comma list of packing.seq_len (default: config's)")
    parser.add_argument("--bins", default="", help="comma list of packing.num_bins (default: config's)")
    args = parser.parse_args(rest)
    base = load_config(args.config, overrides)
    start = time.perf_counter()
    geometries = clip_geometries(base, args.clips)
    records = latent_records(base, geometries, seed=base.seed)
    sizes = [int(np.prod(packing.patching.grid_shape(r["mean"].shape, base.patch))) for r in records]
    shapes = collections.Counter(r["mean"].shape[:3] for r in records)
    print(
        f"{len(records)} clips ({time.perf_counter() - start:.1f} s to render), {len(shapes)} latent shapes, "
        f"patch {tuple(base.patch)}: tokens per clip min {min(sizes)} mean {np.mean(sizes):.1f} max {max(sizes)}"
    )
    print("most common latent (t, h, w):", ", ".join(f"{s} x{n}" for s, n in shapes.most_common(6)))
    seq_lens = [int(x) for x in args.seq_lens.split(",")] if args.seq_lens else [base.packing.seq_len]
    bins = [int(x) for x in args.bins.split(",")] if args.bins else [base.packing.num_bins]
    print(f"max_clips_per_pack={base.packing.max_clips_per_pack}, {args.rounds} rounds per setting")
    print("| seq_len | num_bins | efficiency | clips/pack |")
    print("|---:|---:|---:|---:|")
    for seq_len in seq_lens:
        for n_bins in bins:
            config = load_config(
                args.config, [*overrides, f"packing.seq_len={seq_len}", f"packing.num_bins={n_bins}"]
            )
            eff, clips = measure(config, records, args.rounds)
            default = seq_len == base.packing.seq_len and n_bins == base.packing.num_bins
            print(f"| {seq_len} | {n_bins} | {eff:.2%}{' (default)' if default else ''} | {clips:.1f} |")


if __name__ == "__main__":
    main()
