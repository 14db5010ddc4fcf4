"""Ground-truth metadata of one rendered window: what is in the frames, in output pixels.

Everything window-dependent is computed from the window's own layout (after the cover crop and at the
requested frames), never copied from the native scene: an object the crop cuts is not "fully in frame", one
whose entrance happened before the window starts "stays", one that never shows up is "absent". Captions are
written from this dict alone, and :func:`~jaxsora.data.synthetic.describe.match` scores against its
``objects`` entries, so it is the single source of truth about a window.

Layout of the dict (plain Python / numpy values, picklable)::

    native: {height, width, aspect, num_frames, fps}
    frame_indices, num_frames, height, width, fps        # fps of the window: native fps / frame stride
    background: {kind, colour0, colour1, rgb0, rgb1, direction, panning, description}
    objects: [{shape, colour, rgb, size, size_fraction, size_fractions[T], motion, speed, speed_value,
               boxes[T, 4], centres[T, 2], fully_in[T], visible[T], fully_in_frame, status,
               enters_from, leaves_to, edge, position}]

``status`` is one of ``stays`` (fully in frame throughout), ``enters``, ``leaves``, ``crosses`` (enters and
then leaves), ``partial`` (visible but never fully) and ``absent`` (never visible). Sizes are fractions of
the output frame's shorter side (``size`` is the class at the window's first frame); speeds are in shorter
sides per second (translations) or log-size per second (grow/shrink), so they do not depend on the frame
stride or the render size.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from jaxsora.data.synthetic import vocab
from jaxsora.data.synthetic.captions import background_description
from jaxsora.data.synthetic.render import Layout
from jaxsora.data.synthetic.scene import Scene

VISIBLE_MIN_PX = 0.5  # a box overlapping the frame by less than this (either axis) shows no pixel


def sides(box: np.ndarray, height: int, width: int) -> str | None:
    """Which frame edges ``box`` crosses: ``"left"``, ``"top right"``, ... or None when it is inside."""
    vertical = "top" if box[1] < 0 else "bottom" if box[3] > height else ""
    horizontal = "left" if box[0] < 0 else "right" if box[2] > width else ""
    return " ".join(p for p in (vertical, horizontal) if p) or None


def position(box: np.ndarray, height: int, width: int) -> str:
    """Where the visible part of ``box`` is, on a 3x3 grid: ``"top left"``, ``"left"``, ``"centre"``, ..."""
    x = (max(box[0], 0.0) + min(box[2], width)) / 2 / width
    y = (max(box[1], 0.0) + min(box[3], height)) / 2 / height
    vertical = "top" if y < 1 / 3 else "bottom" if y > 2 / 3 else ""
    horizontal = "left" if x < 1 / 3 else "right" if x > 2 / 3 else ""
    return " ".join(p for p in (vertical, horizontal) if p) or "centre"


def _status(fully: np.ndarray, visible: np.ndarray) -> str:
    if not visible.any():
        return "absent"
    return vocab.visibility_status(fully)


def window_meta(scene: Scene, lay: Layout, frame_indices: Sequence[int]) -> dict[str, Any]:
    h, w = lay.height, lay.width
    indices = [int(i) for i in frame_indices]
    stride = float(np.median(np.diff(indices))) if len(indices) > 1 else 1.0
    bg = scene.background
    objects = []
    for obj, boxes, centres, extents in zip(scene.objects, lay.boxes, lay.centres, lay.extents, strict=True):
        fully = (boxes[:, 0] >= 0) & (boxes[:, 1] >= 0) & (boxes[:, 2] <= w) & (boxes[:, 3] <= h)
        overlap_x = np.minimum(boxes[:, 2], w) - np.maximum(boxes[:, 0], 0)
        overlap_y = np.minimum(boxes[:, 3], h) - np.maximum(boxes[:, 1], 0)
        visible = (overlap_x >= VISIBLE_MIN_PX) & (overlap_y >= VISIBLE_MIN_PX)
        status = _status(fully, visible)
        first_seen = int(np.argmax(visible)) if visible.any() else 0
        fractions = extents / lay.short
        objects.append(
            {
                "shape": obj.shape,
                "colour": obj.colour,
                "rgb": vocab.COLOURS[obj.colour],
                "size": vocab.size_class(float(fractions[0])),
                "size_fraction": float(fractions[0]),
                "size_fractions": fractions.astype(np.float32),
                "motion": obj.motion,
                "speed": obj.speed,
                "speed_value": obj.speed_value,
                "boxes": boxes.astype(np.float32),
                "centres": centres.astype(np.float32),
                "fully_in": fully,
                "visible": visible,
                "fully_in_frame": bool(fully.all()),
                "status": status,
                "enters_from": sides(boxes[0], h, w) if status in ("enters", "crosses") else None,
                "leaves_to": sides(boxes[-1], h, w) if status in ("leaves", "crosses") else None,
                "edge": sides(boxes[first_seen], h, w) if status == "partial" else None,
                "position": position(boxes[first_seen], h, w),
            }
        )
    background = {
        "kind": bg.kind,
        "colour0": bg.colour0,
        "colour1": bg.colour1,
        "rgb0": vocab.BACKGROUND_COLOURS[bg.colour0],
        "rgb1": vocab.BACKGROUND_COLOURS[bg.colour1],
        "direction": bg.direction if bg.kind == "gradient" else None,
        "panning": bg.pan != 0.0,
    }
    background["description"] = background_description(background)
    return {
        "native": {
            "height": scene.height,
            "width": scene.width,
            "aspect": scene.aspect,
            "num_frames": scene.num_frames,
            "fps": scene.fps,
        },
        "frame_indices": indices,
        "num_frames": len(indices),
        "height": h,
        "width": w,
        "fps": scene.fps / stride,
        "background": background,
        "objects": objects,
    }
