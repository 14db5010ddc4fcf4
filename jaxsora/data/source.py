"""The interface every clip source implements, and the error a source raises for an unreadable clip.

A source is random-access: ``info(i)`` is cheap (geometry and captions, no pixel decoding) so the pipeline can
plan which frames to read and at what size; ``load(i, frames, height, width)`` decodes just those frames.

Size semantics of ``load`` (shared by every source): the clip is resized, keeping its aspect ratio, to the
smallest size that *covers* ``height x width``, then centre-cropped to exactly ``height x width``. When the
planned size has the clip's own aspect ratio (the default, up to rounding) nothing visible is cut; when the
pipeline asks for a square (``crop: square``) the centre square is kept.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import threading
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np


class UnreadableClipError(Exception):
    """A clip that cannot be decoded (corrupt, truncated, unsupported). The pipeline skips and counts it."""

    def __init__(self, source_id: str, reason: str):
        super().__init__(f"{source_id}: {reason}")
        self.source_id = source_id
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class ClipInfo:
    """What a source knows about clip ``i`` without decoding pixels."""

    num_frames: int  # 1 for an image
    height: int  # native pixel height
    width: int  # native pixel width
    fps: float  # native frame rate (any positive value for an image)
    caption: str = ""  # the training caption (descriptive where the source has one)
    source_id: str = ""  # a path, a TFDS key, "synthetic/<seed>/<index>": names the clip in warnings


@dataclasses.dataclass
class LoadedClip:
    """Decoded pixels of the requested frames plus the captions that describe exactly those frames."""

    frames: np.ndarray  # uint8 [T, height, width, 3]
    caption: str  # training caption
    short_caption: str = ""  # a short, user-style prompt, where the source has one
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)  # source-specific ground truth
    source_id: str = ""


@runtime_checkable
class ClipSource(Protocol):
    def __len__(self) -> int: ...

    def info(self, index: int) -> ClipInfo: ...

    def load(
        self,
        index: int,
        frame_indices: Sequence[int],
        height: int,
        width: int,
        rng: np.random.Generator | None = None,
    ) -> LoadedClip: ...


def cover_size(src_h: int, src_w: int, dst_h: int, dst_w: int) -> tuple[int, int]:
    """The aspect-preserving size of a ``src_h x src_w`` frame that just covers ``dst_h x dst_w``."""
    scale = max(dst_h / src_h, dst_w / src_w)
    return max(dst_h, math.ceil(src_h * scale - 1e-6)), max(dst_w, math.ceil(src_w * scale - 1e-6))


def center_crop(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """Centre-crop ``[..., H, W, C]`` frames to ``height x width`` (each must be <= the frame's size)."""
    h, w = frames.shape[-3], frames.shape[-2]
    if height > h or width > w:
        raise ValueError(f"cannot crop {h}x{w} frames to {height}x{width}")
    top, left = (h - height) // 2, (w - width) // 2
    return frames[..., top : top + height, left : left + width, :]


class InfoCache:
    """A thread-safe LRU of the ``ClipInfo`` a source has probed, per process (pickling starts it empty)."""

    def __init__(self, size: int):
        self.size = size
        self._infos: collections.OrderedDict[int, ClipInfo] = collections.OrderedDict()
        self._lock = threading.Lock()

    def get(self, index: int) -> ClipInfo | None:
        with self._lock:
            info = self._infos.get(index)
            if info is not None:
                self._infos.move_to_end(index)
            return info

    def put(self, index: int, info: ClipInfo) -> ClipInfo:
        with self._lock:
            self._infos[index] = info
            while len(self._infos) > self.size:
                self._infos.popitem(last=False)
        return info

    def __len__(self) -> int:
        return len(self._infos)

    def indices(self) -> list[int]:
        """Cached indices, least recently used first."""
        with self._lock:
            return list(self._infos)

    def __getstate__(self) -> dict[str, int]:
        return {"size": self.size}

    def __setstate__(self, state: dict[str, int]) -> None:
        self.__init__(state["size"])
