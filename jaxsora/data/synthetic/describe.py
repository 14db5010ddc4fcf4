"""The analytic inverse of the renderer: per-object attributes read back from pixels alone.

``describe(video)`` knows nothing but the vocabulary (:mod:`vocab`) and the shapes (:mod:`shapes`); no
metadata, nothing learned. It works on the synthetic world's own frames and, because every step has a
tolerance, on generated videos of the same world (noisy, blurry, slightly off-colour):

1. **Segmentation**: each pixel takes its nearest named object colour if closer than ``threshold`` (RGB
   distance), else it is background (backgrounds are muted tones far from every object colour). Per colour
   and frame, 8-connected components smaller than ``min_area`` pixels or a tenth of the largest are dropped
   (speckle from noise). A colour seen in no frame with at least ``min_area`` pixels is no object.
2. **Coverage**: around the mask, the local background is fitted as a plane per channel (gradients) from the
   pixels that belong to no object, and each pixel's coverage ``alpha`` is its projection onto the
   background -> object-colour line. Area (sum of alpha) and centroid are then sub-pixel accurate, anti-aliased
   edges included.
3. **Shape**: in frames where the object touches no frame edge, each candidate shape is rendered with the
   renderer's own SDF (sized from the measured area, or stretched to the mask's bounding box) and compared to
   ``alpha`` by soft IoU; scores are averaged over up to five such frames and the best shape wins. An object
   never wholly in the frame is read in its largest frame, where each shape is also placed whole, reaching
   past the frame edge, at a range of extents (``measure._cut_fits``): squeezed into the visible box, a half
   circle and a half square fit about equally. (``frame_scores`` keeps the in-box fits for every frame.)
4. **Size**: the extent implied by the area and the shape (``sqrt(area / shape_area)``), over the frame's
   shorter side, at the first frame (for grow/shrink) or the median over fully visible frames.
5. **Motion**: one least-squares line (shared slope, one offset per kind of sample) through the box centre
   as seen by every trustworthy measurement: shape-corrected centroids of uncut frames; the centroid's x in
   frames cut only by the top/bottom edge (all shapes are mirror-symmetric left-right; circles and squares
   top-bottom too); and, in cut frames, the box edges that still show the shape's extremal points (the
   trailing edge of an entering object). Growth is the slope of log-extent (areas of uncut frames, else the
   sub-pixel width/height along uncut axes). The larger of displacement / ``MOVE_THRESHOLD`` and |log-size
   change| / ``GROW_THRESHOLD`` decides between a direction (eight 45-degree sectors in pixel space) and
   grow/shrink; below both it is "still". With ``fps`` the rates give the speed class.
6. **In frame**: a frame edge cuts the object when the coverage summed along that edge reaches 0.95 of what
   the shape leaves there when exactly touching it (tips and curves push more coverage through as they
   cross), or, for deeper cuts, when the visible sub-pixel extent is half a pixel short of the uncut one.
   ``fully_in_frame`` holds when the object is present and uncut in every frame.

Limits, measured on the synthetic world (tests/test_synthetic.py checks 48-256 px): every attribute is
recovered for >= 99% of objects when the frame's shorter side is >= 32 pixels, i.e. the smallest objects
(0.15 of the shorter side) are >= 5 pixels across; at 24 px it drops to about 97% and at 16 px to about 80%
(small objects vanish into the ``min_area`` speckle filter, shapes blur). Motion needs the clip to last long
enough for a slow object (0.12 shorter sides/s) to move ``MOVE_THRESHOLD`` (0.03 shorter sides): 0.25 s; the
data pipeline's windows last >= 0.5 s. Whether an object is cut is undecidable within about 0.1 px of the
frame edge. Light blur and noise (sigma 8-15) are tolerated; strong blur turns small stars into circles.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from jaxsora.data.synthetic import vocab
from jaxsora.data.synthetic.components import remove_small
from jaxsora.data.synthetic.measure import (
    FrameMeasure,
    as_uint8_video,
    border_reference,
    measure,
    segment,
    shape_scores,
)
from jaxsora.data.synthetic.shapes import GEOMETRY

MOVE_THRESHOLD = 0.03  # displacement over the clip, in shorter sides, below which an object is not moving
GROW_THRESHOLD = 0.045  # |log(extent_end / extent_start)| below which an object is not growing/shrinking
SHAPE_FRAMES = 5  # fully visible frames whose shape scores are averaged
ATTRIBUTES = ("colour", "shape", "size", "motion", "speed", "fully_in_frame")


@dataclasses.dataclass
class ObjectDescription:
    """What :func:`describe` reads about one object. Per-frame arrays have one entry per frame (NaN where the
    object is absent); boxes are ``(x0, y0, x1, y1)`` pixel edges of the mask (``x1`` exclusive)."""

    colour: str
    shape: str
    size: str
    size_fraction: float  # extent / shorter frame side
    motion: str | None  # None for a single frame
    speed: str | None  # None when still, for a single frame, or without fps
    fully_in_frame: bool
    status: str  # stays / enters / leaves / crosses / partial, as in the window metadata
    present: np.ndarray  # [T] bool
    boxes: np.ndarray  # [T, 4]
    centroids: np.ndarray  # [T, 2] coverage-weighted centroid (x, y), pixels
    areas: np.ndarray  # [T] coverage area, pixels
    touches: np.ndarray  # [T] bool: mask touches the frame edge
    velocity: tuple[float, float] = (0.0, 0.0)  # bbox-centre velocity, shorter sides per frame
    growth: float = 0.0  # d log(extent) per frame
    shape_scores: dict[str, float] = dataclasses.field(default_factory=dict)
    # describe(frame_scores=True) only: each frame's shape scores (None where absent), touching frames too
    frame_shape_scores: list[dict[str, float] | None] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {a: getattr(self, a) for a in (*ATTRIBUTES, "size_fraction", "status")}


def _weighted_slope(groups: Iterable[tuple[float, Sequence[float], Sequence[float]]]) -> tuple[float, float]:
    """One slope shared by (weight, times, values) groups that each have their own intercept; also returns the
    fitted value at t = 0 of the first group with samples (NaN if none)."""
    num = den = 0.0
    first = math.nan
    fitted = []
    for weight, ts, vs in groups:
        if len(ts) == 0:
            continue
        t, v = np.asarray(ts, float), np.asarray(vs, float)
        fitted.append((t.mean(), v.mean()))
        dt = t - t.mean()
        num += weight * float((dt * (v - v.mean())).sum())
        den += weight * float((dt * dt).sum())
    slope = num / den if den > 0 else 0.0
    if fitted:
        first = fitted[0][1] - slope * fitted[0][0]
    return slope, first


class _Track:
    """One object's per-frame measurements, and which of its box edges can be trusted in each frame."""

    def __init__(self, frames: list[FrameMeasure | None], shape: str):
        self.frames = frames
        self.shape = shape
        self.geometry = GEOMETRY[shape]
        self.clear = [f is not None and not any(f.touches) for f in frames]
        full = [f for f, c in zip(frames, self.clear, strict=True) if c]
        self.box_size = (
            float(np.median([f.box[2] - f.box[0] for f in full])) if full else 0.0,
            float(np.median([f.box[3] - f.box[1] for f in full])) if full else 0.0,
        )

    def edge_valid(self, f: FrameMeasure, i: int) -> bool:
        """Whether box edge ``i`` (x0, y0, x1, y1) of ``f`` is the object's own edge: not cut by the frame,
        and the shape's extremal points on that side not cut off by a perpendicular frame edge."""
        if f.touches[i]:
            return False
        axis = i % 2
        cut_lo, cut_hi = f.touches[1 - axis], f.touches[3 - axis]  # perpendicular frame edges touched
        if not (cut_lo or cut_hi):
            return True
        size = self.box_size[1 - axis]
        if size <= 0 or (cut_lo and cut_hi):
            return False
        visible = f.box[3 - axis] - f.box[1 - axis]
        cut = max(0.0, 1.0 - visible / size)
        lo, hi = self.geometry.extremes[i]
        margin = 1.5 / size
        return hi >= (cut if cut_lo else 0.0) + margin and lo <= 1.0 - (cut if cut_hi else 0.0) - margin

    def growth(self, areas: np.ndarray) -> tuple[float, float, bool]:
        """(d log extent / frame, log extent at frame 0, measured): from the area of uncut frames when they
        span half the clip, else from the sub-pixel width/height of frames where that axis is uncut."""
        n = len(self.frames)
        t_clear = [t for t, c in enumerate(self.clear) if c]
        g = self.geometry
        if len(t_clear) >= 2 and t_clear[-1] - t_clear[0] >= 0.5 * (n - 1):
            logs = [0.5 * math.log(areas[t] / g.area) for t in t_clear]
            slope, log_e0 = _weighted_slope([(1.0, t_clear, logs)])
            return slope, log_e0, True
        groups = []
        times: list[int] = []
        for axis, half in ((0, g.half_w), (1, g.half_h)):
            ts = [
                t
                for t, f in enumerate(self.frames)
                if f is not None and self.edge_valid(f, axis) and self.edge_valid(f, axis + 2)
            ]
            groups.append(
                (1.0, ts, [math.log(max(self.frames[t].soft_size[axis], 0.5) / (2 * half)) for t in ts])
            )
            times += ts
        if len(set(times)) < 2 or max(times) - min(times) < 0.5 * (n - 1):
            return 0.0, math.nan, False
        slope, log_e0 = _weighted_slope(groups)
        return slope, log_e0, True

    def velocity(self, extent_at: Callable[[int], float]) -> tuple[float, float]:
        """Bbox-centre velocity (pixels per frame): one line, shared by several sample groups with their own
        offsets, through shape-corrected centroids (of uncut frames; of frames cut only along an axis of
        mirror symmetry, for the other axis) and through the trustworthy box edges of cut frames."""
        g = self.geometry
        cx: tuple[list[int], list[float]] = ([], [])
        cy: tuple[list[int], list[float]] = ([], [])
        edges: list[tuple[list[int], list[float]]] = [([], []) for _ in range(4)]
        symmetric_y = self.shape in ("circle", "square")
        for t, f in enumerate(self.frames):
            if f is None:
                continue
            e = extent_at(t)
            # Every shape is mirror-symmetric left-right, so a cut by the top/bottom edge leaves the
            # centroid's x on the centre line; circle and square are also symmetric top-bottom.
            if not (f.touches[0] or f.touches[2]):
                cx[0].append(t)
                cx[1].append(f.centroid[0])
            if self.clear[t] or (symmetric_y and not (f.touches[1] or f.touches[3])):
                cy[0].append(t)
                cy[1].append(f.centroid[1] - g.centroid_y * e)
            if self.clear[t]:
                continue
            for i, half in enumerate((g.half_w, g.half_h, -g.half_w, -g.half_h)):
                if self.edge_valid(f, i):
                    edges[i][0].append(t)
                    edges[i][1].append(f.box[i] + half * e)
        vx, _ = _weighted_slope([(4.0, *cx), (1.0, *edges[0]), (1.0, *edges[2])])
        vy, _ = _weighted_slope([(4.0, *cy), (1.0, *edges[1]), (1.0, *edges[3])])
        return vx, vy

    def touches(self, extent_at: Callable[[int], float]) -> np.ndarray:
        """[T] bool: whether the object reaches or crosses a frame edge.

        Just at the edge, the coverage summed along the edge line is compared with what the shape leaves
        there when its box exactly touches the edge (the sum grows as tips and curves push through). Deeper
        cuts of shapes that narrow away from the edge (a triangle's base) show as a visible sub-pixel extent
        at least half a pixel short of the one in uncut frames.
        """
        present = np.array([f is not None for f in self.frames])
        t_clear = [t for t, c in enumerate(self.clear) if c]
        if not t_clear:
            return present
        ratio = [
            float(np.median([self.frames[t].soft_size[a] / extent_at(t) for t in t_clear])) for a in (0, 1)
        ]
        out = np.zeros(len(self.frames), bool)
        for t, f in enumerate(self.frames):
            if f is None:
                continue
            e = extent_at(t)
            centre = (f.centroid[0], f.centroid[1] - self.geometry.centroid_y * e)  # of the box
            for side, total in enumerate(f.border):
                if total is None:
                    continue
                phase = centre[1] if side in (0, 2) else centre[0]
                near = total >= 0.95 * border_reference(self.shape, side, e, phase)
                deep = f.touches[side] and f.soft_size[side % 2] < ratio[side % 2] * e - 0.5
                if near or deep:
                    out[t] = True
                    break
        return out


def _describe_object(
    video: np.ndarray,
    label: np.ndarray,
    masks: list[np.ndarray | None],
    k: int,
    fps: float | None,
    frame_scores: bool = False,
) -> ObjectDescription:
    num_frames, h, w = label.shape
    short = min(h, w)
    frames = [None if m is None else measure(video[t], label[t], m, k) for t, m in enumerate(masks)]
    present = np.array([f is not None for f in frames])
    areas = np.array([f.area if f else math.nan for f in frames], np.float64)
    # Frames whose mask keeps off the frame edge are the ones trusted for shape and size.
    clear = [t for t, f in enumerate(frames) if f is not None and not any(f.touches)]
    candidates = clear or [int(np.nanargmax(areas))]
    scores = shape_scores(
        [frames[t] for t in sorted(candidates, key=lambda t: -areas[t])[:SHAPE_FRAMES]], cut=not clear
    )
    shape = max(scores, key=scores.get)
    track = _Track(frames, shape)
    extents = np.array([math.sqrt(areas[t] / track.geometry.area) for t in candidates])
    median_e = float(np.median(extents))

    growth, log_e0, measured = track.growth(areas)
    if not measured or not math.isfinite(log_e0):
        growth, log_e0 = 0.0, math.log(median_e)

    def extent_at(t: int) -> float:
        return math.exp(log_e0 + growth * t)

    velocity = track.velocity(extent_at)
    motion: str | None = None
    speed: str | None = None
    if num_frames > 1:
        span = num_frames - 1
        move = math.hypot(*velocity) * span / short
        grow = abs(growth) * span
        if max(move / MOVE_THRESHOLD, grow / GROW_THRESHOLD) < 1.0:
            motion = "still"
        elif grow / GROW_THRESHOLD > move / MOVE_THRESHOLD:
            motion = "grow" if growth > 0 else "shrink"
        else:
            motion = vocab.direction_name(*velocity)
        if fps is not None and motion != "still":
            rate = abs(growth) * fps if motion in ("grow", "shrink") else math.hypot(*velocity) * fps / short
            speed = vocab.speed_class(motion, rate)
    if motion in ("grow", "shrink"):
        fraction = math.exp(log_e0) / short  # at the first frame, from the fitted log-extent line
        final_extent = extent_at
    else:
        fraction = median_e / short
        growth = 0.0
        final_extent = lambda t: median_e
    fully = present & ~track.touches(final_extent)
    nan4 = (math.nan,) * 4
    return ObjectDescription(
        colour=vocab.COLOUR_NAMES[k],
        shape=shape,
        size=vocab.size_class(fraction),
        size_fraction=fraction,
        motion=motion,
        speed=speed,
        fully_in_frame=bool(fully.all()),
        status=vocab.visibility_status(fully),
        present=present,
        boxes=np.array([f.box if f else nan4 for f in frames], np.float32),
        centroids=np.array([f.centroid if f else nan4[:2] for f in frames], np.float32),
        areas=areas.astype(np.float32),
        touches=present & ~fully,
        velocity=(velocity[0] / short, velocity[1] / short),
        growth=growth,
        shape_scores=scores,
        # Per frame, the uncut fits only (the evidence; the whole-shape fits of a cut object cost ~10-50x).
        frame_shape_scores=[shape_scores([f]) if f else None for f in frames] if frame_scores else None,
    )


def describe(
    video: np.ndarray,
    fps: float | None = None,
    *,
    threshold: float = vocab.COLOUR_THRESHOLD,
    min_area: int | None = None,
    frame_scores: bool = False,
) -> list[ObjectDescription]:
    """The objects in ``video`` (uint8 ``[T, H, W, 3]`` / ``[H, W, 3]``, or float in [-1, 1]), one per named
    colour present, in :data:`vocab.COLOUR_NAMES` order. ``fps`` enables speed classes. ``min_area``
    (default: 4 pixels, more for large frames) is the smallest component that counts as object rather than
    noise. ``frame_scores`` also keeps every frame's shape scores (``frame_shape_scores``; the shape read is
    still the mean over the largest clear frames): evidence of where in a clip a shape goes wrong."""
    video = as_uint8_video(video)
    num_frames, h, w, _ = video.shape
    if min_area is None:
        min_area = max(4, round(2e-4 * h * w))
    label = segment(video, threshold)
    counts = np.stack(
        [np.bincount(f.reshape(-1) + 1, minlength=len(vocab.COLOUR_NAMES) + 1)[1:] for f in label]
    )
    described = []
    for k in np.nonzero((counts >= min_area).any(0))[0]:
        masks: list[np.ndarray | None] = []
        for t in range(num_frames):
            mask = None
            if counts[t, k] >= min_area:
                mask = remove_small(label[t] == k, min_area, 0.1)
                mask = mask if mask.sum() >= min_area else None
            masks.append(mask)
        if any(m is not None for m in masks):
            described.append(_describe_object(video, label, masks, int(k), fps, frame_scores))
    return described
