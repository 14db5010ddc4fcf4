"""Batching by shape bucket, for convolutional consumers (the VAE) that need one (T, H, W) per batch.

Clips arrive in any order with any shape. Each shape has a buffer; a buffer that reaches its batch size
(``max_batch_pixels // (T*H*W)``, clamped and rounded to a multiple) is emitted as one batch. When more than
``max_buffered`` clips wait across all buffers, the fullest buffer is emitted early, so memory stays bounded
however many shapes the data has. At the end of a finite stream the partial buffers are emitted
(or dropped with ``drop_remainder``).

Checkpointing is exact without saving any pixels: the state is the parent iterator's state *before the
oldest clip still buffered* plus how many clips were pulled since then and which of those were already
emitted. Restoring rewinds the parent there and replays those pulls, dropping the emitted ones, which
rebuilds the very same buffers (the parent is deterministic: Grain seeds each element's randomness by its
position). The replay costs at most ``max_buffered`` clip loads.

Elements are dicts whose ``"video"`` is uint8 ``[T, H, W, 3]``; an element with a ``"skipped"`` key is a
clip its source could not read: it is counted and warned about once, never batched.
"""

from __future__ import annotations

import collections
import logging
from typing import Any

import grain
import numpy as np

from jaxsora.data.pixels import to_signed_unit

log = logging.getLogger(__name__)

# Keys stacked into arrays; every other key becomes a list.
_ARRAY_KEYS = ("text_tokens", "text_mask", "fps", "index")


def batch_size_for(
    shape: tuple[int, ...], *, max_batch_pixels: int, max_batch_size: int, multiple: int
) -> int:
    """How many clips of ``shape`` (T, H, W) make a batch under the pixel cap."""
    voxels = int(np.prod(shape))
    size = min(max_batch_size, max(1, max_batch_pixels // voxels))
    return max(multiple, (size // multiple) * multiple)


def full_batch_size(shape: tuple[int, ...], data_config) -> int:
    """Clips of ``shape`` (T, H, W) in a full batch under ``data_config`` (``batch_multiple`` 1)."""
    return batch_size_for(
        tuple(shape),
        max_batch_pixels=data_config.max_batch_pixels,
        max_batch_size=data_config.max_batch_size,
        multiple=1,
    )


def pad_to_full_batch(video: np.ndarray, data_config) -> np.ndarray:
    """A partial batch of one shape (a flushed bucket, the last batches) padded with copies of its last clip to
    the size a full batch of that shape has under ``data_config`` (``batch_multiple`` 1), so a jitted
    consumer compiles once per clip shape rather than once per (shape, partial size). The caller drops the
    padded rows."""
    full = full_batch_size(video.shape[1:4], data_config)
    if len(video) >= full:
        return video
    return np.concatenate([video, np.repeat(video[-1:], full - len(video), axis=0)])


VIDEO_DTYPES = ("float32", "uint8")


def collate(elements: list[dict[str, Any]], video_dtype: str = "float32") -> dict[str, Any]:
    """Stacks one bucket's clips: ``video`` becomes float32 ``[B, T, H, W, 3]`` in [-1, 1], or stays uint8
    (``video_dtype="uint8"``: a quarter of the bytes to stack, move and transfer; the consumer converts it on
    its device with :func:`to_signed_unit`)."""
    videos = np.stack([e["video"] for e in elements])
    if video_dtype not in VIDEO_DTYPES:
        raise ValueError(f"video_dtype must be one of {VIDEO_DTYPES}, got {video_dtype!r}")
    batch: dict[str, Any] = {"video": videos if video_dtype == "uint8" else to_signed_unit(videos)}
    for key in elements[0]:
        if key == "video":
            continue
        values = [e[key] for e in elements]
        batch[key] = np.stack(values) if key in _ARRAY_KEYS else values
    return batch


class BucketBatchIterDataset(grain.IterDataset):
    """Groups the parent's clips into one-shape batches (see the module docstring)."""

    def __init__(
        self,
        parent: grain.IterDataset,
        *,
        max_batch_pixels: int,
        max_batch_size: int,
        batch_multiple: int = 1,
        max_buffered: int = 512,
        drop_remainder: bool = False,
        video_dtype: str = "float32",
    ):
        super().__init__(parent)
        if video_dtype not in VIDEO_DTYPES:
            raise ValueError(f"video_dtype must be one of {VIDEO_DTYPES}, got {video_dtype!r}")
        if batch_multiple < 1 or max_batch_size < batch_multiple:
            raise ValueError(
                f"need 1 <= batch_multiple <= max_batch_size, got {batch_multiple}, {max_batch_size}"
            )
        self._kwargs = dict(
            max_batch_pixels=max_batch_pixels,
            max_batch_size=max_batch_size,
            batch_multiple=batch_multiple,
            max_buffered=max_buffered,
            drop_remainder=drop_remainder,
            video_dtype=video_dtype,
        )

    def __iter__(self) -> BucketBatchIterator:
        return BucketBatchIterator(self._parent.__iter__(), **self._kwargs)


class BucketBatchIterator(grain.DatasetIterator):
    def __init__(
        self,
        parent: grain.DatasetIterator,
        *,
        max_batch_pixels: int,
        max_batch_size: int,
        batch_multiple: int,
        max_buffered: int,
        drop_remainder: bool,
        video_dtype: str = "float32",
    ):
        super().__init__(parent)
        self._video_dtype = video_dtype
        self._max_batch_pixels = max_batch_pixels
        self._max_batch_size = max_batch_size
        self._multiple = batch_multiple
        self._max_buffered = max_buffered
        self._drop_remainder = drop_remainder
        self._reset(self._parent.get_state())
        self.skipped: collections.Counter[str] = collections.Counter()

    def _reset(self, anchor_state: dict[str, Any]) -> None:
        # Per shape, buffered (sequence number, parent state before the pull, element).
        self._buffers: dict[tuple[int, ...], list[tuple[int, dict, dict]]] = {}
        self._seq = 0  # pulls so far, counted from the anchor
        self._anchor_seq = 0
        self._anchor_state = anchor_state
        self._emitted: set[int] = set()  # seqs at or after the anchor already emitted or skipped
        self._exhausted = False

    # -- core -------------------------------------------------------------------------------------------
    def _batch_size(self, shape: tuple[int, ...]) -> int:
        return batch_size_for(
            shape,
            max_batch_pixels=self._max_batch_pixels,
            max_batch_size=self._max_batch_size,
            multiple=self._multiple,
        )

    def _buffered(self) -> int:
        return sum(len(b) for b in self._buffers.values())

    def _pull(self, replaying: bool = False) -> bool:
        """Pulls one element into its buffer; False at the end of the parent."""
        state_before = self._parent.get_state()
        try:
            element = next(self._parent)
        except StopIteration:
            self._exhausted = True
            return False
        seq = self._seq
        self._seq += 1
        if replaying and seq in self._emitted:
            return True
        if "skipped" in element:
            self._emitted.add(seq)
            source_id = element["skipped"]
            if not replaying:
                if source_id not in self.skipped:
                    log.warning("skipping unreadable clip %s (%s)", source_id, element.get("reason", ""))
                self.skipped[source_id] += 1
            self._advance_anchor()
            return True
        shape = tuple(element["video"].shape[:3])
        self._buffers.setdefault(shape, []).append((seq, state_before, element))
        return True

    def _emit(self, shape: tuple[int, ...], count: int) -> dict[str, Any]:
        entries, self._buffers[shape] = self._buffers[shape][:count], self._buffers[shape][count:]
        if not self._buffers[shape]:
            del self._buffers[shape]
        self._emitted.update(seq for seq, _, _ in entries)
        self._advance_anchor()
        return collate([element for _, _, element in entries], self._video_dtype)

    def _advance_anchor(self) -> None:
        """Moves the anchor to the oldest clip still buffered (or to now, when nothing is)."""
        oldest = min((entries[0] for entries in self._buffers.values()), default=None, key=lambda e: e[0])
        if oldest is None:
            self._anchor_seq, self._anchor_state = self._seq, self._parent.get_state()
        else:
            self._anchor_seq, self._anchor_state = oldest[0], oldest[1]
        self._emitted = {s for s in self._emitted if s >= self._anchor_seq}

    def __next__(self) -> dict[str, Any]:
        while True:
            for shape, entries in self._buffers.items():
                if len(entries) >= self._batch_size(shape):
                    return self._emit(shape, self._batch_size(shape))
            if self._buffered() > self._max_buffered:
                shape = max(self._buffers, key=lambda s: len(self._buffers[s]) / self._batch_size(s))
                return self._emit(shape, len(self._buffers[shape]))
            if self._exhausted:
                while self._buffers:
                    shape = min(self._buffers, key=lambda s: self._buffers[s][0][0])
                    size = len(self._buffers[shape])
                    if self._drop_remainder and size < self._batch_size(shape):
                        del self._buffers[shape]
                        continue
                    return self._emit(shape, size)
                raise StopIteration
            self._pull()

    # -- checkpointing ----------------------------------------------------------------------------------
    def get_state(self) -> dict[str, Any]:
        return {
            "parent": self._anchor_state,
            "replay": self._seq - self._anchor_seq,
            "emitted": sorted(s - self._anchor_seq for s in self._emitted),
            "skipped": dict(self.skipped),
        }

    def set_state(self, state: dict[str, Any]) -> None:
        self._parent.set_state(state["parent"])
        self._reset(state["parent"])
        self._emitted = set(state["emitted"])
        self.skipped = collections.Counter(state.get("skipped", {}))
        for _ in range(state["replay"]):
            if not self._pull(replaying=True):
                break
        self._advance_anchor()
