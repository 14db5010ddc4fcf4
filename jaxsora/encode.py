"""`jaxsora encode`: run a trained VAE over a source and write the latent dataset (see
:mod:`jaxsora.data.latents`).

Each process encodes its own shard of the source (``jax.process_index()``) into its own part files. After
every finished part the data iterator's state is saved, so an interrupted run resumes at the next part:
nothing written is redone, nothing is skipped. Statistics of the latent channels are accumulated for
normalising the diffusion transformer's inputs.

Two things keep the device busy. The encoder is compiled ahead, in background threads, for the clip shapes
the first ``SCAN_CLIPS`` clips of the shard have (read from the source's clip descriptions, no pixels) while
the data workers start, instead of one shape after another as their first batches arrive; a shape not
foreseen compiles when it comes. And a batch's encoding runs on the device while the host writes the batch
before it.

``meta.json`` is written at the start (the VAE, its factors and the latent channels, ``"complete": false``), so
that a DiT trainer started beside the encode can build and compile, and again at the end with the channel
statistics (``"complete": true``).
"""

from __future__ import annotations

import concurrent.futures
import copy
import json
import logging
import os
import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from jaxsora import tokenizer
from jaxsora.data.buckets import full_batch_size, pad_to_full_batch
from jaxsora.data.latents import ChannelStats, PartWriter, part_path, progress_path, write_json, write_meta
from jaxsora.data.pipeline import batched_dataset, clip_shapes, close_iterator, make_source
from jaxsora.progress import progress_bar

log = logging.getLogger(__name__)

SCAN_CLIPS = 2000  # clips of the shard whose shapes are compiled for ahead


def precompile_shapes(codec, source, config, pool, *, shard_index: int, shard_count: int, start: int, limit):
    """On ``pool``: read the shapes of the shard's clips from its ``start``-th on (at most ``SCAN_CLIPS`` of
    them, and ``limit`` if given) and start compiling the encoder for each shape's full uint8 batch, the
    commonest shape first. A scan that fails is logged; each shape then compiles when its first batch comes.
    Returns the scan's future (its result: the shapes found, (T, H, W) -> count)."""

    def scan():
        stop = start + (SCAN_CLIPS if limit is None else min(SCAN_CLIPS, limit))
        shapes = clip_shapes(source, config, range(len(source))[shard_index::shard_count][start:stop])
        for t, h, w in sorted(shapes, key=shapes.get, reverse=True):
            codec.precompile_encode(pool, (full_batch_size((t, h, w), config.data), t, h, w, 3), np.uint8)
        return shapes

    def report(future):
        if not future.cancelled() and future.exception() is not None:
            log.warning("reading the clip shapes to compile for ahead failed: %r", future.exception())

    future = pool.submit(scan)
    future.add_done_callback(report)
    return future


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
    process, processes = jax.process_index(), jax.process_count()
    source = make_source(config.data)
    # uint8 batches (a quarter of the host work and transfer), converted on the device before the encoder
    data_iter = iter(
        batched_dataset(
            source, config, shard_index=process, shard_count=processes, num_epochs=1, video_dtype="uint8"
        )
    )

    progress_file = progress_path(out, process)
    done = json.loads(progress_file.read_text()) if progress_file.is_file() else {"parts": 0, "clips": 0}
    if "iterator" in done:
        data_iter.set_state(done["iterator"])
    stats = ChannelStats(codec.cfg.latent_channels, done.get("stats"))
    # The dataset keeps byte tokens whatever the encoder (a words or T5 encoder re-tokenizes the stored caption
    # text when training): rows of text.max_len for the byte encoder, never shorter than 256 bytes otherwise,
    # so a words config's short rows (64) do not cut the stored byte captions.
    byte_len = config.text.max_len if config.text_encoder.kind == "byte" else max(config.text.max_len, 256)
    header = {
        "vae": {**codec.cfg.__dict__, "channel_mult": list(codec.cfg.channel_mult)},
        "spatial_factor": codec.cfg.spatial_factor,
        "temporal_factor": codec.cfg.temporal_factor,
        "latent_channels": codec.cfg.latent_channels,
        "text_max_len": byte_len,
        **(extra_meta or {}),
    }
    # What a trainer started beside the encode needs to build and compile (latents.wait_for_meta).
    if process == 0:
        write_meta(out, {**header, "complete": False})
    total = len(source) // processes if max_clips is None else max_clips
    bar = progress_bar(total=total, initial=done["clips"], desc="encode", unit="clip", disable=not progress)
    writer = None

    def finish_part(state):
        writer.close()
        done["parts"] += 1
        done["iterator"] = state
        done["stats"] = stats.state()  # of the finished parts' clips: a trainer may start on them
        write_json(progress_file, done)

    def write(batch, mean, std, state):
        """Writes one encoded batch (its device arrays fetched here) and, at a part's end, the iterator
        ``state`` taken right after this batch was pulled."""
        nonlocal writer
        count = len(batch["video"])
        # the whole padded batch to the host, then the real rows (a device slice would compile per row count)
        mean, std = np.asarray(mean, np.float32)[:count], np.asarray(std, np.float32)[:count]
        if writer is None:
            writer = PartWriter(part_path(out, process, done["parts"]))
        t, h, w = batch["video"].shape[1:4]
        for k in range(count):
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
        done["clips"] += count
        bar.update(count)
        if writer.count >= part_size:
            finish_part(state)
            writer = None

    pool = concurrent.futures.ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1))
    if chunk_latents == 0:  # one-shot encodes: one executable per shape, compiled ahead
        precompile_shapes(
            codec,
            source,
            config,
            pool,
            shard_index=process,
            shard_count=processes,
            start=done["clips"],
            limit=None if max_clips is None else max_clips - done["clips"],
        )
    pending = None  # (batch, mean, std, iterator state): encoding on the device, not yet written
    pulled = done["clips"]
    while max_clips is None or pulled < max_clips:
        try:
            batch = next(data_iter)
        except StopIteration:
            break
        state = data_iter.get_state()
        pulled += len(batch["video"])
        # uint8 on the host, converted on the device; dispatched before the previous batch is written
        mean, std = codec.encode(
            jnp.asarray(pad_to_full_batch(batch["video"], config.data)),
            chunk_latents=chunk_latents,
            with_std=True,
        )
        if pending is not None:
            write(*pending)
        pending = (batch, mean, std, state)
    if pending is not None:
        write(*pending)
    pool.shutdown(wait=True, cancel_futures=True)
    if writer is not None:
        finish_part(data_iter.get_state())
    bar.close()
    close_iterator(data_iter)
    # Every process's parts are closed: gather the shards' statistics and clip counts (a barrier too), so the
    # dataset is marked complete only once all of it is written, with the statistics of all of it.
    stats, clips = _all_shards(stats, done["clips"], codec.cfg.latent_channels)
    meta = {
        **header,
        "latent_mean": stats.mean.tolist(),
        "latent_std": stats.std.tolist(),
        "clips": clips,
        "complete": True,
    }
    if process == 0:
        write_meta(out, meta)
    return meta


def _all_shards(stats: ChannelStats, clips: int, channels: int) -> tuple[ChannelStats, int]:
    """The channel statistics and clip count over every process's shard (this process's alone when it is the
    only one); with several processes, each waits here for all."""
    if jax.process_count() == 1:
        return stats, clips
    from jax.experimental import multihost_utils

    mine = np.concatenate([[stats.n, clips], stats.mean, stats.m2]).astype(np.float64)
    # float64 travels as its bits (int32 pairs): device arrays are float32 unless jax_enable_x64 is set
    gathered = np.asarray(multihost_utils.process_allgather(mine.view(np.int32)), np.int32)
    rows = gathered.reshape(jax.process_count(), -1).view(np.float64)
    total = ChannelStats(channels)
    for row in rows:
        mean, m2 = row[2 : 2 + channels], row[2 + channels :]
        total.merge(ChannelStats(channels, {"n": float(row[0]), "mean": mean.tolist(), "m2": m2.tolist()}))
    return total, int(rows[:, 1].sum())
