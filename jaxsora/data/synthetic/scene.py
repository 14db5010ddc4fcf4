"""Scenes: what clip ``(seed, index)`` shows, sampled without rendering a pixel.

A :class:`Scene` is resolution-free. Positions and sizes are in *shorter-side units*: the native frame spans
``[0, aspect_w] x [0, aspect_h]`` where the shorter of the two is 1, so a wide frame gets a wide composition,
circles stay round at any render size, and speeds (shorter sides per second) do not depend on the aspect
ratio, the resolution or the frame rate. Every object moves at constant velocity, or grows/shrinks at a
constant log rate about a fixed centre, so its state at any time is a closed-form function of the time.

Sampling is rejection sampling of whole trajectories over the native clip: an object's bounding box, padded
by :data:`OBJECT_GAP`, never intersects another's in any native frame; "stays" objects (and all still,
growing and shrinking ones) keep :data:`BORDER_MARGIN` from the frame edge; entering objects start at least
:data:`OUTSIDE_MIN` cut by the edge and end fully inside (leaving ones the reverse, crossing ones both); every
object is fully inside in at least one native frame. An object that cannot be placed is dropped, so a clip
asked for three objects may get fewer (never zero).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

from jaxsora.data.synthetic import vocab
from jaxsora.data.synthetic.shapes import GEOMETRY

BORDER_MARGIN = 0.03  # shorter sides between a "staying" object's box and the frame edge
OUTSIDE_MIN = 0.05  # how far an entering object's box pokes out of the frame at the first frame
OBJECT_GAP = 0.03  # minimum distance between the boxes of two objects, at every frame
MODES = ("stays", "enters", "leaves", "crosses")
MODE_PROBS = (0.4, 0.25, 0.25, 0.1)
NUM_OBJECTS_PROBS = (0.4, 0.35, 0.25)  # 1, 2 or 3 objects
GRADIENT_DIRECTIONS = tuple(vocab.DIRECTIONS)  # a gradient runs from colour0 to colour1 in this direction


@dataclasses.dataclass(frozen=True)
class WorldConfig:
    """The distribution of native clip geometry (see :class:`~jaxsora.data.synthetic.SyntheticWorld`)."""

    image_fraction: float = 0.2
    min_frames: int = 8
    max_frames: int = 96
    resolutions: tuple[int, ...] = (144, 240, 360, 480, 720)
    aspect_ratios: tuple[str, ...] = ("9:16", "3:4", "1:1", "4:3", "16:9", "21:9")
    fps_choices: tuple[int, ...] = (8, 12, 24, 30)

    def __post_init__(self):
        if not 0.0 <= self.image_fraction <= 1.0:
            raise ValueError(f"image_fraction must be in [0, 1], got {self.image_fraction}")
        if not 2 <= self.min_frames <= self.max_frames:
            raise ValueError(f"need 2 <= min_frames <= max_frames, got {self.min_frames}, {self.max_frames}")
        if not self.resolutions or min(self.resolutions) < 16:
            raise ValueError(f"resolutions must be short sides >= 16, got {self.resolutions}")
        if not self.fps_choices or min(self.fps_choices) <= 0:
            raise ValueError(f"fps_choices must be positive, got {self.fps_choices}")
        for a in self.aspect_ratios:
            parse_aspect(a)


def parse_aspect(aspect: str) -> tuple[int, int]:
    """``"16:9"`` -> ``(16, 9)`` (width, height)."""
    try:
        w, h = (int(p) for p in aspect.split(":"))
    except ValueError:
        raise ValueError(f"aspect ratio must look like '16:9', got {aspect!r}") from None
    if w <= 0 or h <= 0:
        raise ValueError(f"aspect ratio must be positive, got {aspect!r}")
    return w, h


@dataclasses.dataclass(frozen=True)
class Background:
    """A solid colour, or a linear ramp ``colour0 -> colour1`` along ``direction`` that may pan over time.

    The ramp coordinate of a point ``p`` (shorter-side units) is ``u = (p . dir - start) / period + phase +
    pan * t`` and the colour weight is the triangle wave ``|((u + 1) mod 2) - 1|``: at ``t = 0`` the whole
    frame lies within one rising ramp (weight ``phase`` at the start side), so a static gradient is an honest
    "colour0 on one side, colour1 on the other"; a panning one slides and folds back and forth.
    """

    colour0: str
    colour1: str  # == colour0 for a solid background
    direction: str = "right"
    start: float = 0.0  # p . dir at the frame corner where the ramp starts
    period: float = 1.0
    phase: float = 0.0
    pan: float = 0.0  # ramp units per second

    @property
    def kind(self) -> str:
        return "solid" if self.colour0 == self.colour1 else "gradient"


@dataclasses.dataclass(frozen=True)
class SceneObject:
    """One object's appearance and closed-form trajectory (shorter-side units, seconds)."""

    shape: str
    colour: str
    motion: str  # one of vocab.MOTIONS
    speed: str | None  # "slow" / "fast", None when still
    speed_value: float  # shorter sides / s for translations, |d log size / dt| for grow/shrink, 0 when still
    extent0: float  # largest bbox side at t = 0
    cx0: float
    cy0: float
    vx: float = 0.0
    vy: float = 0.0
    growth: float = 0.0  # signed d log(extent) / dt

    def centres(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.cx0 + self.vx * t, self.cy0 + self.vy * t

    def extents(self, t: np.ndarray) -> np.ndarray:
        return self.extent0 * np.exp(self.growth * t)

    def boxes(self, t: np.ndarray) -> np.ndarray:
        """``[T, 4]`` boxes ``(x0, y0, x1, y1)`` at times ``t``."""
        geometry = GEOMETRY[self.shape]
        cx, cy = self.centres(t)
        e = self.extents(t)
        hw, hh = geometry.half_w * e, geometry.half_h * e
        return np.stack([cx - hw, cy - hh, cx + hw, cy + hh], -1)


@dataclasses.dataclass(frozen=True)
class Scene:
    """A whole native clip: geometry, timing, background and objects."""

    height: int
    width: int
    aspect: str
    num_frames: int
    fps: float
    background: Background
    objects: tuple[SceneObject, ...]

    @property
    def frame_w(self) -> float:
        """Frame width in shorter-side units."""
        return self.width / min(self.height, self.width)

    @property
    def frame_h(self) -> float:
        return self.height / min(self.height, self.width)

    def times(self, frame_indices: Sequence[int] | np.ndarray) -> np.ndarray:
        return np.asarray(frame_indices, dtype=np.float64) / self.fps


def _overshoot(boxes: np.ndarray, fw: float, fh: float) -> np.ndarray:
    """How far each box pokes out of the frame (<= 0 when inside), ``[T]``."""
    return np.maximum.reduce([-boxes[:, 0], -boxes[:, 1], boxes[:, 2] - fw, boxes[:, 3] - fh])


def _intersects(a: np.ndarray, b: np.ndarray, gap: float) -> bool:
    """Whether boxes ``a`` and ``b`` (both ``[T, 4]``) come closer than ``gap`` at any common frame."""
    sep_x = np.maximum(a[:, 0] - b[:, 2], b[:, 0] - a[:, 2])
    sep_y = np.maximum(a[:, 1] - b[:, 3], b[:, 1] - a[:, 3])
    return bool((np.maximum(sep_x, sep_y) < gap).any())


def _sample_background(rng: np.random.Generator, fw: float, fh: float) -> Background:
    names = vocab.BACKGROUND_NAMES
    if rng.random() < 0.4:
        name = names[int(rng.integers(len(names)))]
        return Background(name, name)
    i, j = rng.choice(len(names), size=2, replace=False)
    direction = GRADIENT_DIRECTIONS[int(rng.integers(len(GRADIENT_DIRECTIONS)))]
    dx, dy = vocab.DIRECTIONS[direction]
    corners = np.array([[0, 0], [fw, 0], [0, fh], [fw, fh]]) @ np.array([dx, dy])
    extent = float(corners.max() - corners.min())
    period = extent * float(rng.uniform(1.0, 1.6))
    phase = float(rng.uniform(0.0, 1.0 - extent / period))
    pan = float(rng.uniform(0.05, 0.15) * rng.choice([-1, 1])) if rng.random() < 0.5 else 0.0
    return Background(names[i], names[j], direction, float(corners.min()), period, phase, pan)


def _interval(lo: float, hi: float, rng: np.random.Generator) -> float | None:
    return float(rng.uniform(lo, hi)) if hi >= lo else None


def _sample_path(
    rng: np.random.Generator,
    vx: float,
    vy: float,
    hw: float,
    hh: float,
    fw: float,
    fh: float,
    duration: float,
) -> tuple[float, float] | None:
    """A start centre for a box of half sizes ``(hw, hh)`` moving at ``(vx, vy)``, for a random mode."""
    lo = np.array([hw + BORDER_MARGIN, hh + BORDER_MARGIN])
    hi = np.array([fw - hw - BORDER_MARGIN, fh - hh - BORDER_MARGIN])
    if (hi < lo).any():
        return None
    v = np.array([vx, vy])

    def out(c: np.ndarray) -> float:
        return float(max(hw - c[0], c[0] + hw - fw, hh - c[1], c[1] + hh - fh))

    mode = MODES[int(rng.choice(len(MODES), p=MODE_PROBS))]
    if mode == "stays":
        lo0, hi0 = np.maximum(lo, lo - v * duration), np.minimum(hi, hi - v * duration)
        if (hi0 < lo0).any():
            return None
        c0 = rng.uniform(lo0, hi0)
        return float(c0[0]), float(c0[1])
    for _ in range(8):
        if mode == "enters":
            c0 = rng.uniform(lo, hi) - v * duration
            ok = out(c0) >= OUTSIDE_MIN
        elif mode == "leaves":
            c0 = rng.uniform(lo, hi)
            ok = out(c0 + v * duration) >= OUTSIDE_MIN
        else:  # crosses
            tm = rng.uniform(0.0, duration)
            c0 = rng.uniform(lo, hi) - v * tm
            ok = out(c0) >= OUTSIDE_MIN and out(c0 + v * duration) >= OUTSIDE_MIN
        if ok:
            return float(c0[0]), float(c0[1])
    return None


def _sample_object(
    rng: np.random.Generator, colour: str, scene_times: np.ndarray, fw: float, fh: float, is_image: bool
) -> SceneObject | None:
    duration = float(scene_times[-1])
    shape = vocab.SHAPES[int(rng.integers(len(vocab.SHAPES)))]
    geometry = GEOMETRY[shape]
    size = vocab.SIZE_CLASSES[int(rng.integers(len(vocab.SIZE_CLASSES)))]
    extent = float(rng.uniform(*vocab.SIZE_RANGES[size]))
    motion = "still" if is_image else vocab.MOTIONS[int(rng.integers(len(vocab.MOTIONS)))]
    speed = None if motion == "still" else vocab.SPEED_CLASSES[int(rng.integers(2))]
    m = BORDER_MARGIN
    if motion in ("still", "grow", "shrink"):
        growth = 0.0
        value = 0.0
        if speed is not None:
            value = float(rng.uniform(*vocab.GROW_SPEEDS[speed]))
            growth = value if motion == "grow" else -value
        largest = extent * math.exp(max(growth, 0.0) * duration)
        smallest = extent * math.exp(min(growth, 0.0) * duration)
        if largest > vocab.MAX_SIZE or smallest < vocab.MIN_SIZE:
            return None
        hw, hh = geometry.half_w * largest, geometry.half_h * largest
        cx, cy = _interval(hw + m, fw - hw - m, rng), _interval(hh + m, fh - hh - m, rng)
        if cx is None or cy is None:
            return None
        return SceneObject(shape, colour, motion, speed, value, extent, cx, cy, growth=growth)
    value = float(rng.uniform(*vocab.MOVE_SPEEDS[speed]))
    ux, uy = vocab.DIRECTIONS[motion]
    vx, vy = ux * value, uy * value
    start = _sample_path(rng, vx, vy, geometry.half_w * extent, geometry.half_h * extent, fw, fh, duration)
    if start is None:
        return None
    return SceneObject(shape, colour, motion, speed, value, extent, start[0], start[1], vx, vy)


def sample_scene(seed: int, index: int, config: WorldConfig) -> Scene:
    """The scene of clip ``index`` of the world seeded ``seed``: a pure function of its arguments."""
    rng = np.random.default_rng([seed, index])
    aw, ah = parse_aspect(config.aspect_ratios[int(rng.integers(len(config.aspect_ratios)))])
    short = int(config.resolutions[int(rng.integers(len(config.resolutions)))])
    if aw >= ah:
        height, width = short, round(short * aw / ah)
    else:
        height, width = round(short * ah / aw), short
    is_image = rng.random() < config.image_fraction
    if is_image:
        num_frames = 1
        fps = float(config.fps_choices[int(rng.integers(len(config.fps_choices)))])
    else:
        num_frames = int(rng.integers(config.min_frames, config.max_frames + 1))
        # Every video lasts at least a second (where the choices allow), so slow motion is visible.
        choices = [f for f in config.fps_choices if f <= num_frames] or [min(config.fps_choices)]
        fps = float(choices[int(rng.integers(len(choices)))])
    fw, fh = width / min(height, width), height / min(height, width)
    background = _sample_background(rng, fw, fh)
    times = np.arange(num_frames) / fps
    num_objects = 1 + int(rng.choice(len(NUM_OBJECTS_PROBS), p=NUM_OBJECTS_PROBS))
    colours = [vocab.COLOUR_NAMES[i] for i in rng.choice(len(vocab.COLOUR_NAMES), num_objects, replace=False)]
    objects: list[SceneObject] = []
    placed: list[np.ndarray] = []
    for colour in colours:
        for _ in range(40):
            obj = _sample_object(rng, colour, times, fw, fh, is_image)
            if obj is None:
                continue
            boxes = obj.boxes(times)
            if not (_overshoot(boxes, fw, fh) <= -BORDER_MARGIN + 1e-9).any():
                continue  # never fully inside (with margin) at a native frame
            if any(_intersects(boxes, other, OBJECT_GAP) for other in placed):
                continue
            objects.append(obj)
            placed.append(boxes)
            break
    if not objects:  # cannot happen with the default vocabulary; kept as a guarantee of >= 1 object
        objects.append(SceneObject("circle", colours[0], "still", None, 0.0, 0.3, fw / 2, fh / 2))
    return Scene(height, width, f"{aw}:{ah}", num_frames, fps, background, tuple(objects))
