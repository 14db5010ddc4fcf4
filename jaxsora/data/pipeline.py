"""The clip pipeline: any :class:`~jaxsora.data.source.ClipSource` -> model-ready pixel clips, as Grain datasets.

    index -> [this process's shard] -> [shuffle, reshuffled every epoch] -> repeat
          -> LoadClip (plan size + frames from ClipInfo, decode just those, tokenize the caption)
          -> IterDataset (thread prefetch, or worker processes) -> BucketBatch (one shape per batch)

Every step is deterministic in (seed, position), so the iterator's state can be saved and restored exactly
(``iterator.get_state()`` / ``set_state()``, or Orbax's Grain checkpoint handler).
"""

from __future__ import annotations

import dataclasses
import gc
from typing import Any

import grain
import ml_collections
import numpy as np

from jaxsora import tokenizer
from jaxsora.data import geometry
from jaxsora.data.buckets import BucketBatchIterDataset
from jaxsora.data.source import ClipSource, UnreadableClipError


def ensure_absl_flags() -> None:
    """Grain (worker processes) and Orbax read absl flags; mark them parsed with their defaults when the
    program did not use absl (argparse CLIs, notebooks, pytest)."""
    from absl import flags

    if not flags.FLAGS.is_parsed():
        flags.FLAGS(["jaxsora"], known_only=True)


def close_iterator(iterator) -> None:
    """Closes a Grain iterator and frees the shared memory its worker processes handed over.

    With worker processes (``mp_prefetch``), each element reaches this process in a shared-memory block,
    unlinked when the element is garbage-collected, by Grain on a background thread. A program that ends
    right after its loop (training, encoding) exits with blocks still queued for that thread or held in the
    closed iterator's buffers, and Python's resource tracker warns about "leaked shared_memory objects" at
    shutdown. This closes the iterator, waits for the queued unlinks, and makes later ones synchronous (for
    the closed iterator's buffers, freed with it). A new Grain iterator starts a new unlink thread.
    """
    close = getattr(iterator, "close", None)
    if close is not None:
        close()
    gc.collect()
    try:  # Grain's own class: no public API for this; without these names there is nothing to wait for
        from grain._src.python.ipc.shared_memory_array import SharedMemoryArray
    except ImportError:
        return
    lock = getattr(SharedMemoryArray, "_lock", None)
    disable = getattr(SharedMemoryArray, "_disable_async_del", None)
    if lock is None or disable is None:
        return
    with lock:
        pool = getattr(SharedMemoryArray, "_del_thread_pool", None)
        disable()
    if pool is not None:
        pool.close()
        pool.join()


def make_source(data: ml_collections.ConfigDict) -> ClipSource:
    """The source named by ``data.source``; optional dependencies are imported only when used."""
    if data.source == "synthetic":
        from jaxsora.data.synthetic import SyntheticWorld

        return SyntheticWorld(**data.synthetic.to_dict())
    if data.source == "folder":
        from jaxsora.data.folder import FolderSource

        if not data.path:
            raise ValueError("data.source=folder needs --config.data.path=DIR")
        return FolderSource(data.path, captions=data.captions or None)
    if data.source == "tfds":
        from jaxsora.data.tfds_source import TfdsSource

        if not data.tfds_name:
            raise ValueError("data.source=tfds needs --config.data.tfds_name=NAME")
        return TfdsSource(
            data.tfds_name,
            split=data.tfds_split,
            data_dir=data.tfds_data_dir or None,
            video_key=data.video_key or None,
            text_key=data.text_key or None,
        )
    raise ValueError(f"unknown data.source {data.source!r}: use synthetic, folder or tfds")


@dataclasses.dataclass(frozen=True)
class ClipSpec:
    """The geometry settings of ``config.data``, as a small picklable value."""

    max_pixels: int
    spatial_multiple: int
    upscale: bool
    crop: str
    max_frames: int
    frame_choices: tuple[int, ...]
    temporal_factor: int
    fps: float
    random_crop: bool
    caption: str
    text_max_len: int

    @classmethod
    def from_config(cls, config: ml_collections.ConfigDict) -> ClipSpec:
        d = config.data
        if d.caption not in ("descriptive", "short"):
            raise ValueError(f"data.caption must be 'descriptive' or 'short', got {d.caption!r}")
        return cls(
            max_pixels=d.max_pixels,
            spatial_multiple=d.spatial_multiple,
            upscale=d.upscale,
            crop=d.crop,
            max_frames=d.max_frames,
            frame_choices=tuple(d.frame_choices),
            temporal_factor=d.temporal_factor,
            fps=d.fps,
            random_crop=d.random_crop,
            caption=d.caption,
            text_max_len=config.text.max_len,
        )

    def plan(self, info, rng: np.random.Generator | None = None) -> tuple[list[int], float, int, int]:
        """(native frame indices, output fps, height, width) of a clip described by ``info`` (a
        :class:`ClipInfo`); ``rng`` only moves the frame window, never the clip's output shape."""
        frames, fps = geometry.plan_frames(
            info.num_frames,
            info.fps,
            target_fps=self.fps,
            max_frames=self.max_frames,
            temporal_factor=self.temporal_factor,
            rng=rng,
            choices=self.frame_choices,
        )
        height, width = geometry.plan_size(
            info.height,
            info.width,
            max_pixels=self.max_pixels,
            multiple=self.spatial_multiple,
            crop=self.crop,
            upscale=self.upscale,
        )
        return frames, fps, height, width


def clip_shapes(
    source: ClipSource, config: ml_collections.ConfigDict, indices
) -> dict[tuple[int, int, int], int]:
    """(T, H, W) -> count over the clips ``indices`` of ``source``: the shapes the pipeline makes of them,
    from :meth:`ClipSource.info` alone (no pixels read). Clips the source cannot describe are left out."""
    spec = ClipSpec.from_config(config)
    shapes: dict[tuple[int, int, int], int] = {}
    for index in indices:
        try:
            frames, _, height, width = spec.plan(source.info(int(index)))
        except UnreadableClipError:
            continue
        key = (len(frames), height, width)
        shapes[key] = shapes.get(key, 0) + 1
    return shapes


class LoadClip(grain.transforms.RandomMap):
    """Source index -> example dict (or a ``{"skipped": id}`` marker for an unreadable clip)."""

    def __init__(self, source: ClipSource, spec: ClipSpec):
        self.source = source
        self.spec = spec

    def random_map(self, index: int, rng: np.random.Generator) -> dict[str, Any]:
        index = int(index)
        spec = self.spec
        try:
            info = self.source.info(index)
            frames, fps, height, width = spec.plan(info, rng if spec.random_crop else None)
            clip = self.source.load(index, frames, height, width, rng=rng)
        except UnreadableClipError as e:
            return {"skipped": e.source_id, "reason": e.reason}
        caption = clip.short_caption if spec.caption == "short" and clip.short_caption else clip.caption
        tokens, mask = tokenizer.encode(caption, spec.text_max_len)
        return {
            "video": clip.frames,
            "text_tokens": tokens,
            "text_mask": mask,
            "caption": caption,
            "short_caption": clip.short_caption,
            "source_id": clip.source_id or info.source_id,
            "fps": np.float32(fps),
            "index": np.int64(index),
        }


def clip_dataset(
    source: ClipSource,
    config: ml_collections.ConfigDict,
    *,
    shard_index: int | None = None,
    shard_count: int | None = None,
    num_epochs: int | None = None,
) -> grain.MapDataset:
    """Per-clip examples (uint8 video at native aspect) for this process's shard; ``num_epochs=None`` repeats."""
    if shard_index is None or shard_count is None:
        import jax

        shard_index, shard_count = jax.process_index(), jax.process_count()
    if not 0 <= shard_index < shard_count:
        raise ValueError(f"shard_index {shard_index} outside [0, {shard_count})")
    if len(source) < shard_count:
        raise ValueError(f"the source has {len(source)} clips, fewer than the {shard_count} shards")
    ds = grain.MapDataset.range(len(source))[shard_index::shard_count]
    if config.data.shuffle:
        ds = ds.shuffle(seed=config.seed)
    ds = ds.repeat(num_epochs)
    return ds.random_map(LoadClip(source, ClipSpec.from_config(config)), seed=config.seed)


def batched_dataset(
    source: ClipSource,
    config: ml_collections.ConfigDict,
    *,
    shard_index: int | None = None,
    shard_count: int | None = None,
    num_epochs: int | None = None,
    drop_remainder: bool = False,
    video_dtype: str = "float32",
) -> grain.IterDataset:
    """Shape-bucketed batches: ``video`` float32 ``[B, T, H, W, 3]`` in [-1, 1] (or uint8 pixels with
    ``video_dtype="uint8"``, converted by the consumer on its device), tokens, captions."""
    d = config.data
    ds = clip_dataset(source, config, shard_index=shard_index, shard_count=shard_count, num_epochs=num_epochs)
    ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=max(d.num_threads, 0), prefetch_buffer_size=16))
    if d.num_workers > 0:
        ensure_absl_flags()
        options = grain.MultiprocessingOptions(
            num_workers=d.num_workers, per_worker_buffer_size=d.get("worker_buffer_size", 1)
        )
        ds = ds.mp_prefetch(options)
    return BucketBatchIterDataset(
        ds,
        max_batch_pixels=d.max_batch_pixels,
        max_batch_size=d.max_batch_size,
        batch_multiple=d.batch_multiple,
        max_buffered=d.max_buffered,
        drop_remainder=drop_remainder,
        video_dtype=video_dtype,
    )
