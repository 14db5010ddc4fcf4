"""A small latent dataset on disk, in `jaxsora encode`'s format, without a VAE: for DiT training tests.

Clip i's latents are a smooth pattern whose colour (channel weights) depends on its caption's colour word and
whose spatial phase moves with time, so a model can learn caption -> latents; several shapes (images, short
videos, two aspect ratios).
"""

from __future__ import annotations

import json
import pathlib

import numpy as np

from jaxsora import tokenizer
from jaxsora.data.latents import ChannelStats, PartWriter, part_path

SHAPES = [(1, 4, 4), (2, 4, 6), (3, 4, 4), (2, 6, 4)]  # latent (t, h, w)
COLOURS = ["red", "green", "blue", "yellow"]


def make_latent_dataset(
    folder: str | pathlib.Path,
    num_clips: int = 24,
    channels: int = 16,
    text_len: int = 48,
    part_size: int | None = None,
    progress: list | None = None,
):
    """Writes the dataset in parts of ``part_size`` clips (default: one part) and, as the encoder does after
    each part, ``progress-p000.json``; ``progress`` (a list) receives each of its successive contents."""
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    part_size = part_size or num_clips
    stats = ChannelStats(channels)
    writer = None
    for i in range(num_clips):
        if writer is None:
            writer = PartWriter(part_path(folder, 0, i // part_size))
        t, h, w = SHAPES[i % len(SHAPES)]
        colour = COLOURS[(i // len(SHAPES)) % len(COLOURS)]
        weights = np.cos(np.arange(channels) * (1 + COLOURS.index(colour)))
        tt, hh, ww = np.meshgrid(np.arange(t), np.arange(h), np.arange(w), indexing="ij")
        wave = np.sin(0.9 * ww + 0.6 * hh - 0.8 * tt)[..., None]
        mean = (wave * weights + 0.1 * i / num_clips).astype(np.float32)
        caption = f"a {colour} wave moving right, clip {i}"
        tokens, mask = tokenizer.encode(caption, text_len)
        writer.write(
            {
                "mean": mean,
                "std": np.full_like(mean, 0.01),
                "caption": caption,
                "short_caption": colour,
                "tokens": tokens,
                "mask": mask,
                "source_id": f"latent/{i}",
                "fps": 8.0,
                "frames": 1 + 4 * (t - 1),
                "height": 8 * h,
                "width": 8 * w,
            }
        )
        stats.update(mean)
        if writer.count == part_size or i == num_clips - 1:
            writer.close()
            writer = None
            done = {"parts": i // part_size + 1, "clips": i + 1, "stats": stats.state()}
            (folder / "progress-p000.json").write_text(json.dumps(done))
            if progress is not None:
                progress.append(done)
    meta = {
        "spatial_factor": 8,
        "temporal_factor": 4,
        "latent_channels": channels,
        "latent_mean": stats.mean.tolist(),
        "latent_std": stats.std.tolist(),
        "clips": num_clips,
        "text_max_len": text_len,
    }
    (folder / "meta.json").write_text(json.dumps(meta))
    return meta
