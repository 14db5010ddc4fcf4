"""Rendering a scene's frames at any output size, directly (no render-then-resize).

:func:`layout` places the scene in output pixels with the cover-crop semantics of ``ClipSource.load``: the
full native-aspect frame is laid out at ``cover_size(native_h, native_w, height, width)`` and the centre
``height x width`` window is kept, so the output is exactly what resizing a native render and centre-cropping
it would give, but sharp at every size.

:func:`render` draws the background for all frames at once (one broadcast expression), then each object:
its signed-distance coverage is evaluated for all frames at once on a small per-object window that follows
its bounding box (``[T, h, w]``, vectorised numpy), and alpha-composited per frame. Work is proportional to
the object's area, not the frame's.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

from jaxsora.data.source import cover_size
from jaxsora.data.synthetic import vocab
from jaxsora.data.synthetic.scene import Background, Scene
from jaxsora.data.synthetic.shapes import GEOMETRY, coverage


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where everything is in the output frames of one window."""

    height: int  # output size
    width: int
    cover_h: int  # the covering frame the output is centre-cropped from
    cover_w: int
    top: int  # crop offset inside the covering frame
    left: int
    px_x: float  # covering-frame pixels per shorter-side unit, horizontally and vertically
    px_y: float
    times: np.ndarray  # [T] seconds since the native first frame
    centres: np.ndarray  # [N, T, 2] object bbox centres (x, y), output pixels
    extents: np.ndarray  # [N, T] largest bbox side, pixels
    boxes: np.ndarray  # [N, T, 4] (x0, y0, x1, y1), output pixels

    @property
    def short(self) -> int:
        """The output frame's shorter side: the unit of size fractions and speeds in window metadata."""
        return min(self.height, self.width)


def layout(scene: Scene, frame_indices: Sequence[int], height: int, width: int) -> Layout:
    """Object boxes of the native frames ``frame_indices`` in a ``height x width`` cover-cropped output."""
    cover_h, cover_w = cover_size(scene.height, scene.width, height, width)
    top, left = (cover_h - height) // 2, (cover_w - width) // 2
    px_x, px_y = cover_w / scene.frame_w, cover_h / scene.frame_h
    px = min(cover_h, cover_w)  # pixels per shorter side, for sizes
    times = scene.times(frame_indices)
    n, t = len(scene.objects), len(times)
    centres = np.zeros((n, t, 2))
    extents = np.zeros((n, t))
    boxes = np.zeros((n, t, 4))
    for i, obj in enumerate(scene.objects):
        cx, cy = obj.centres(times)
        centres[i, :, 0] = cx * px_x - left
        centres[i, :, 1] = cy * px_y - top
        extents[i] = obj.extents(times) * px
        geometry = GEOMETRY[obj.shape]
        hw, hh = geometry.half_w * extents[i], geometry.half_h * extents[i]
        boxes[i] = np.stack(
            [centres[i, :, 0] - hw, centres[i, :, 1] - hh, centres[i, :, 0] + hw, centres[i, :, 1] + hh], -1
        )
    return Layout(height, width, cover_h, cover_w, top, left, px_x, px_y, times, centres, extents, boxes)


def _background(background: Background, lay: Layout) -> np.ndarray:
    """``[T, H, W, 3]`` float32 background."""
    shape = (len(lay.times), lay.height, lay.width, 3)
    c0 = np.asarray(vocab.BACKGROUND_COLOURS[background.colour0], np.float32)
    if background.kind == "solid":
        frames = np.empty(shape, np.float32)
        frames[...] = c0
        return frames
    c1 = np.asarray(vocab.BACKGROUND_COLOURS[background.colour1], np.float32)
    dx, dy = vocab.DIRECTIONS[background.direction]
    xs = (np.arange(lay.width, dtype=np.float32) + lay.left + 0.5) / lay.px_x
    ys = (np.arange(lay.height, dtype=np.float32) + lay.top + 0.5) / lay.px_y
    u = (
        (xs[None, :] * dx + ys[:, None] * dy - background.start) / background.period + background.phase
    ).astype(np.float32)
    u = u[None] + (background.pan * lay.times).astype(np.float32)[:, None, None]
    weight = np.abs(np.mod(u + 1.0, 2.0) - 1.0)
    return c0 + weight[..., None] * (c1 - c0)


def render(scene: Scene, lay: Layout) -> np.ndarray:
    """The frames of ``lay``'s window: uint8 ``[T, height, width, 3]``."""
    frames = _background(scene.background, lay)
    h, w = lay.height, lay.width
    for obj, boxes, centres, extents in zip(scene.objects, lay.boxes, lay.centres, lay.extents, strict=True):
        seen = np.nonzero((boxes[:, 2] > 0) & (boxes[:, 0] < w) & (boxes[:, 3] > 0) & (boxes[:, 1] < h))[0]
        if len(seen) == 0:
            continue
        b = boxes[seen]
        win_w = int(math.ceil((b[:, 2] - b[:, 0]).max())) + 3
        win_h = int(math.ceil((b[:, 3] - b[:, 1]).max())) + 3
        ox = np.floor(b[:, 0]).astype(np.int64) - 1
        oy = np.floor(b[:, 1]).astype(np.int64) - 1
        gx = (ox[:, None] + np.arange(win_w) + 0.5 - centres[seen, 0, None]).astype(np.float32)
        gy = (oy[:, None] + np.arange(win_h) + 0.5 - centres[seen, 1, None]).astype(np.float32)
        alpha = coverage(obj.shape, gx[:, None, :], gy[:, :, None], extents[seen, None, None])
        rgb = np.asarray(vocab.COLOURS[obj.colour], np.float32)
        for k, t in enumerate(seen):
            x0, y0 = max(int(ox[k]), 0), max(int(oy[k]), 0)
            x1, y1 = min(int(ox[k]) + win_w, w), min(int(oy[k]) + win_h, h)
            if x1 <= x0 or y1 <= y0:
                continue
            a = alpha[k, y0 - oy[k] : y1 - oy[k], x0 - ox[k] : x1 - ox[k], None]
            region = frames[t, y0:y1, x0:x1]
            region += a * (rgb - region)
    return (frames + 0.5).astype(np.uint8)
