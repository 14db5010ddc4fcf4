"""`jaxsora encode`: run a trained VAE over a source and write the latent dataset (see
:mod:`jaxsora.data.latents`).

Each process encodes its own shard of the source (``jax.process_index()``) into its own part files. After
every finished part the data iterator's state is saved, so an interrupted run resumes at the next part:
nothing written is redone, nothing is skipped. Statistics of the latent channels are accumulated for
normalising the diffusion transformer's inputs.
"""

from __future__ import annotations

import copy
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from jaxsora import tokenizer
from jaxsora.data.buckets import pad_to_full_batch, to_signed_unit
from jaxsora.data.latents import ChannelStats, PartWriter, part_path
from jaxsora.data.pipeline import batched_dataset, close_iterator, make_source
from jaxsora.progress import progress_bar


def encode_dataset(
    codec,
    config,
    out: str | pathlib.Path,
    *,
    part_size: int = 256,
    max_clips: int | None = None,
    chunk_latents: int = 0,
    progress: bool = True,
    extra_meta: dict | None = None,
) -> dict:
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    config = copy.deepcopy(config)
    config.unlock() if hasattr(config, "unlock") else None
    config.data.shuffle = False
    config.data.batch_multiple = 1
    process, count = jax.process_index(), jax.process_count()
    source = make_source(config.data)
    # uint8 batches (a quarter of the host work and transfer), converted on the device before the encoder
    data_iter = iter(
        batched_dataset(
            source, config, shard_index=process, shard_count=count, num_epochs=1, video_dtype="uint8"
        )
    )

    progress_path = out / f"progress-p{process:03d}.json"
    done = json.loads(progress_path.read_text()) if progress_path.is_file() else {"parts": 0, "clips": 0}
    if "iterator" in done:
        data_iter.set_state(done["iterator"])
    stats = ChannelStats(codec.cfg.latent_channels, done.get("stats"))
    # The dataset keeps byte tokens whatever the encoder (a words or T5 encoder re-tokenizes the stored caption
    # text when training): rows of text.max_len for the byte encoder, never shorter than 256 bytes otherwise,
    # so a words config's short rows (64) do not cut the stored byte captions.
    byte_len = config.text.max_len if config.text_encoder.kind == "byte" else max(config.text.max_len, 256)
    total = len(source) // count if max_clips is None else max_clips
    bar = progress_bar(total=total, initial=done["clips"], desc="encode", unit="clip", disable=not progress)
    writer = None

    def finish_part():
        writer.close()
        done["parts"] += 1
        done["iterator"] = data_iter.get_state()
        done["stats"] = stats.state()
        progress_path.write_text(json.dumps(done))

    while max_clips is None or done["clips"] < max_clips:
        try:
            batch = next(data_iter)
        except StopIteration:
            break
        video = to_signed_unit(jnp.asarray(pad_to_full_batch(batch["video"], config.data)))
        mean, std = codec.encode(video, chunk_latents=chunk_latents, with_std=True)
        count = len(batch["video"])
        mean, std = np.asarray(mean[:count], np.float32), np.asarray(std[:count], np.float32)
        if writer is None:
            writer = PartWriter(part_path(out, process, done["parts"]))
        t, h, w = batch["video"].shape[1:4]
        for k in range(len(mean)):
            tokens, mask = tokenizer.encode(batch["caption"][k], byte_len)
            writer.write(
                {
                    "mean": mean[k],
                    "std": std[k],
                    "caption": batch["caption"][k],
                    "short_caption": batch["short_caption"][k],
                    "tokens": tokens,
                    "mask": mask,
                    "source_id": batch["source_id"][k],
                    "fps": float(batch["fps"][k]),
                    "frames": int(t),
                    "height": int(h),
                    "width": int(w),
                }
            )
            stats.update(mean[k])
        done["clips"] += len(mean)
        bar.update(len(mean))
        if writer.count >= part_size:
            finish_part()
            writer = None
    if writer is not None:
        finish_part()
    bar.close()
    close_iterator(data_iter)
    meta = {
        "vae": {**codec.cfg.__dict__, "channel_mult": list(codec.cfg.channel_mult)},
        "spatial_factor": codec.cfg.spatial_factor,
        "temporal_factor": codec.cfg.temporal_factor,
        "latent_channels": codec.cfg.latent_channels,
        "latent_mean": stats.mean.tolist(),
        "latent_std": stats.std.tolist(),
        "clips": done["clips"],
        "text_max_len": byte_len,
        **(extra_meta or {}),
    }
    if process == 0:
        (out / "meta.json").write_text(json.dumps(meta, indent=2))
    return meta
