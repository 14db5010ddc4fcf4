"""The synthetic world's vocabulary: the named colours, shapes, sizes, motions and speeds, with the numbers
that define each name.

Everything a caption can say is a class here, and every class is a well-separated range of a measurable
quantity, so that :mod:`describe` can recover the name from pixels alone:

* colours: ten saturated or extreme object colours at least 100 apart in RGB; backgrounds are muted,
  mid-luminance tones at least 105 away from every object colour (gradients between two of them too), so a
  nearest-colour test with a threshold of :data:`COLOUR_THRESHOLD` separates objects from background even on
  anti-aliased edges;
* sizes: the object's largest bounding-box side as a fraction of the frame's *shorter* side, in three ranges
  with gaps between them (:data:`SIZE_RANGES`), split at :data:`SIZE_THRESHOLDS`;
* motions: eight directions in *pixel* space (so a diagonal is 45 degrees whatever the aspect ratio), still,
  grow and shrink;
* speeds: translation in shorter-side lengths per second, growth as d(log size)/dt per second, so the class of
  a motion does not depend on the frame rate or the resolution it is rendered at.
"""

from __future__ import annotations

import math

import numpy as np

# Object colours: name -> RGB. Kept exact (no jitter) so colour segmentation is unambiguous.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 20, 20),
    "orange": (255, 128, 0),
    "yellow": (255, 230, 0),
    "green": (20, 170, 40),
    "cyan": (0, 210, 230),
    "blue": (20, 60, 230),
    "purple": (140, 40, 200),
    "pink": (255, 105, 180),
    "white": (250, 250, 250),
    "black": (10, 10, 10),
}
COLOUR_NAMES: tuple[str, ...] = tuple(COLOURS)
COLOUR_ARRAY = np.array([COLOURS[n] for n in COLOUR_NAMES], dtype=np.float32)  # [10, 3]

# Background colours: muted, desaturated mid tones far from every object colour.
BACKGROUND_COLOURS: dict[str, tuple[int, int, int]] = {
    "grey": (128, 128, 128),
    "dark grey": (84, 84, 84),
    "light grey": (168, 168, 168),
    "slate": (92, 102, 116),
    "sand": (170, 160, 132),
    "olive": (118, 118, 82),
    "taupe": (128, 110, 100),
    "sage": (120, 138, 120),
}
BACKGROUND_NAMES: tuple[str, ...] = tuple(BACKGROUND_COLOURS)

# A pixel belongs to an object colour when that colour is its nearest and closer than this (RGB distance).
COLOUR_THRESHOLD = 60.0

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star")

SIZE_CLASSES: tuple[str, ...] = ("small", "medium", "large")
# Largest bounding-box side / shorter frame side, sampled uniformly within the class range.
SIZE_RANGES: dict[str, tuple[float, float]] = {
    "small": (0.15, 0.20),
    "medium": (0.26, 0.33),
    "large": (0.40, 0.48),
}
# Class boundaries: geometric midpoints of the gaps.
SIZE_THRESHOLDS: tuple[float, float] = (math.sqrt(0.20 * 0.26), math.sqrt(0.33 * 0.40))
MIN_SIZE, MAX_SIZE = SIZE_RANGES["small"][0], SIZE_RANGES["large"][1]

DIRECTIONS: dict[str, tuple[float, float]] = {  # unit vectors in pixel space, y pointing down
    "left": (-1.0, 0.0),
    "right": (1.0, 0.0),
    "up": (0.0, -1.0),
    "down": (0.0, 1.0),
    "up-left": (-math.sqrt(0.5), -math.sqrt(0.5)),
    "up-right": (math.sqrt(0.5), -math.sqrt(0.5)),
    "down-left": (-math.sqrt(0.5), math.sqrt(0.5)),
    "down-right": (math.sqrt(0.5), math.sqrt(0.5)),
}
MOTIONS: tuple[str, ...] = (*DIRECTIONS, "still", "grow", "shrink")

SPEED_CLASSES: tuple[str, ...] = ("slow", "fast")
# Translation speed in shorter-side lengths per second.
MOVE_SPEEDS: dict[str, tuple[float, float]] = {"slow": (0.12, 0.18), "fast": (0.30, 0.45)}
MOVE_SPEED_THRESHOLD = math.sqrt(0.18 * 0.30)
# Growth rate |d log(size) / dt| per second.
GROW_SPEEDS: dict[str, tuple[float, float]] = {"slow": (0.18, 0.25), "fast": (0.40, 0.55)}
GROW_SPEED_THRESHOLD = math.sqrt(0.25 * 0.40)


def size_class(fraction: float) -> str:
    """The size name of an object whose largest side is ``fraction`` of the frame's shorter side."""
    if fraction < SIZE_THRESHOLDS[0]:
        return "small"
    return "medium" if fraction < SIZE_THRESHOLDS[1] else "large"


def speed_class(motion: str, value: float) -> str | None:
    """``slow``/``fast`` for a translation speed or growth rate; ``None`` for a still object."""
    if motion == "still":
        return None
    threshold = GROW_SPEED_THRESHOLD if motion in ("grow", "shrink") else MOVE_SPEED_THRESHOLD
    return "slow" if abs(value) < threshold else "fast"


def direction_name(dx: float, dy: float) -> str:
    """The nearest of the eight direction names for a displacement ``(dx, dy)`` (y down)."""
    angle = math.degrees(math.atan2(-dy, dx)) % 360.0  # counter-clockwise from +x, y up
    sector = int(((angle + 22.5) % 360.0) // 45.0)
    return ("right", "up-right", "up", "up-left", "left", "down-left", "down", "down-right")[sector]


def visibility_status(fully_in_frame: np.ndarray) -> str:
    """How an object's presence runs over a window, from its per-frame fully-in-frame flags: ``stays``,
    ``enters``, ``leaves``, ``crosses`` (in only mid-window) or ``partial`` (never fully in). Shared by the
    ground truth (``meta``) and its inverse (``describe``) so the two cannot disagree on the rule."""
    if not fully_in_frame.any():
        return "partial"
    if fully_in_frame[0] and fully_in_frame[-1]:
        return "stays"
    if fully_in_frame[-1]:
        return "enters"
    return "leaves" if fully_in_frame[0] else "crosses"
