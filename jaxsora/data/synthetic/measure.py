"""Per-frame measurements for :mod:`describe`: colour segmentation and, for one object in one frame, its
box, edge contact, sub-pixel coverage, area, centroid, and the shape-template scores.

**Segmentation** assigns each pixel its nearest named object colour if closer than the threshold (RGB
distance), else background, through a 128**3 lookup table (one gather per pixel). **Coverage** (``alpha``)
comes from the local background, fitted as a plane per channel to the non-object pixels around the mask
(gradients), onto which each pixel's colour is projected towards the object colour: area, centroid and the
coverage along a frame edge are then sub-pixel accurate, anti-aliased edges included.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence

import numpy as np

from jaxsora.data.synthetic import vocab
from jaxsora.data.synthetic.components import dilate
from jaxsora.data.synthetic.shapes import GEOMETRY, coverage


@dataclasses.dataclass
class FrameMeasure:
    """One object in one frame."""

    box: tuple[int, int, int, int]  # mask bbox x0, y0, x1, y1 (exclusive)
    touches: tuple[bool, bool, bool, bool]  # the mask reaches the left, top, right, bottom frame edge
    border: tuple[float | None, ...]  # coverage summed along each frame edge line (None: too far away)
    area: float
    centroid: tuple[float, float]
    soft_size: tuple[float, float]  # sub-pixel width and height: sums over columns / rows of the max coverage
    alpha: np.ndarray  # coverage on the region
    origin: tuple[int, int]  # region's top-left pixel (x, y)


def as_uint8_video(video: np.ndarray) -> np.ndarray:
    video = np.asarray(video)
    if video.ndim == 3:
        video = video[None]
    if video.ndim != 4 or video.shape[-1] != 3:
        raise ValueError(f"expected a video [T, H, W, 3] or an image [H, W, 3], got shape {video.shape}")
    if 0 in video.shape:
        raise ValueError(f"empty video of shape {video.shape}")
    if video.dtype == np.uint8:
        return video
    if not np.issubdtype(video.dtype, np.floating):
        raise ValueError(f"expected uint8 or float pixels in [-1, 1], got {video.dtype}")
    return np.rint((np.clip(video, -1.0, 1.0) + 1.0) * 127.5).astype(np.uint8)


@functools.lru_cache(maxsize=4)
def _colour_table(threshold: float) -> np.ndarray:
    """[128**3] int8 lookup: nearest object colour (or -1) of every RGB cell of 2x2x2 values. Cells are tiny
    next to the threshold, so labelling a video is one gather instead of ten distance computations."""
    centres = np.arange(128, dtype=np.float32) * 2 + 0.5
    best = np.full((128, 128, 128), threshold * threshold, np.float32)
    label = np.full((128, 128, 128), -1, np.int8)
    for k, (r, g, b) in enumerate(vocab.COLOUR_ARRAY):
        d = (
            ((centres - r) ** 2)[:, None, None]
            + ((centres - g) ** 2)[None, :, None]
            + ((centres - b) ** 2)[None, None, :]
        )
        closer = d < best
        np.copyto(best, d, where=closer)
        label[closer] = k
    return label.reshape(-1)


def segment(video: np.ndarray, threshold: float) -> np.ndarray:
    """[T, H, W] int8: index into vocab.COLOUR_NAMES of each pixel's colour, -1 for background."""
    q = (video >> 1).astype(np.int32)
    return _colour_table(float(threshold))[(q[..., 0] << 14) | (q[..., 1] << 7) | q[..., 2]]


def _background(pixels: np.ndarray, xs: np.ndarray, ys: np.ndarray, fallback: np.ndarray):
    """A per-channel plane fitted to background pixels; returns a function of (x, y) arrays."""
    if len(pixels) >= 12:
        a = np.stack([xs, ys, np.ones_like(xs)], -1).astype(np.float64)
        coef, *_ = np.linalg.lstsq(a, pixels.astype(np.float64), rcond=None)
        if np.ptp(xs) > 0 and np.ptp(ys) > 0:
            return lambda x, y: x[..., None] * coef[0] + y[..., None] * coef[1] + coef[2]
    mean = pixels.mean(0) if len(pixels) else fallback
    return lambda x, y: np.broadcast_to(mean, (*np.broadcast_shapes(x.shape, y.shape), 3))


def measure(frame: np.ndarray, label: np.ndarray, core: np.ndarray, k: int) -> FrameMeasure:
    """Bounding box, edge contact, coverage, area and centroid of colour ``k``'s mask ``core`` in ``frame``."""
    h, w = core.shape
    ys, xs = np.nonzero(core)
    x0, x1, y0, y1 = int(xs.min()), int(xs.max()) + 1, int(ys.min()), int(ys.max()) + 1
    rx0, ry0, rx1, ry1 = max(x0 - 4, 0), max(y0 - 4, 0), min(x1 + 4, w), min(y1 + 4, h)
    region_core = core[ry0:ry1, rx0:rx1]
    region_label = label[ry0:ry1, rx0:rx1]
    region = frame[ry0:ry1, rx0:rx1].astype(np.float32)
    near = dilate(region_core, 2)
    free = (region_label < 0) & ~dilate(near, 1)
    gy, gx = np.mgrid[ry0:ry1, rx0:rx1].astype(np.float32) + 0.5
    if free.sum() < 12:  # no background around the object to fit: use the whole frame's
        everywhere = frame[label < 0].astype(np.float32)
        fallback = everywhere.mean(0) if len(everywhere) else np.full(3, 128.0, np.float32)
    else:
        fallback = None
    bg = _background(region[free], gx[free], gy[free], fallback)(gx, gy)
    rgb = vocab.COLOUR_ARRAY[k]
    axis = rgb - bg
    alpha = ((region - bg) * axis).sum(-1) / np.maximum((axis * axis).sum(-1), 1.0)
    alpha = np.clip(alpha, 0.0, 1.0) * (near & ((region_label == k) | (region_label < 0)))
    if alpha.sum() < 0.5 * region_core.sum():  # the background fit failed (odd generated frames): binary mask
        alpha = region_core.astype(np.float32)
    area = float(alpha.sum())
    centroid = (float((alpha * gx).sum() / area), float((alpha * gy).sum() / area))
    touches = (x0 == 0, y0 == 0, x1 == w, y1 == h)
    border = (
        float(alpha[:, 0].sum()) if rx0 == 0 else None,
        float(alpha[0, :].sum()) if ry0 == 0 else None,
        float(alpha[:, -1].sum()) if rx1 == w else None,
        float(alpha[-1, :].sum()) if ry1 == h else None,
    )
    soft_size = (float(alpha.max(0).sum()), float(alpha.max(1).sum()))
    return FrameMeasure(
        (x0, y0, x1, y1), touches, border, area, centroid, soft_size, alpha.astype(np.float32), (rx0, ry0)
    )


CUT_EXTENTS = np.geomspace(1.0, 3.0, 12)  # multiples of the smallest extent a cut shape's visible box allows
CUT_SHIFTS = (-0.5, 0.0, 1.0, 2.0, 3.0)  # pixels the shape's far edge may reach past the mask's: thin tips


def _cut_fits(f: FrameMeasure, g) -> list[tuple[float, float, float, float]]:
    """Template placements for an object cut by the frame edge: the whole shape, at extents from the smallest
    its visible box allows up to 3x that, its far side at the mask's uncut box edge (or up to 3 pixels past
    it, where a star's or triangle's tip is too thin for the mask) and the rest beyond the frame, compared only
    where the frame is (the region ends at its edges). The visible box alone (the second fit of
    ``shape_scores``) squeezes a cut shape into what shows, where a half circle and a half square fit about
    equally; placed whole, a half circle is fitted by a circle."""
    bx0, by0, bx1, by1 = f.box
    lo_x, lo_y, hi_x, hi_y = f.touches
    smallest = max((bx1 - bx0 + 0.5) / (2 * g.half_w), (by1 - by0 + 0.5) / (2 * g.half_h))

    def centres(lo: int, hi: int, cut_lo: bool, cut_hi: bool, half: float) -> list[float]:
        if cut_lo and not cut_hi:  # only the high edge shows: the shape reaches out past the low one
            return [hi + 0.25 + s - half for s in CUT_SHIFTS]
        if cut_hi and not cut_lo:
            return [lo - 0.25 - s + half for s in CUT_SHIFTS]
        return [(lo + hi) / 2]

    return [
        (cx, cy, float(e), float(e))
        for e in smallest * CUT_EXTENTS
        for cx in centres(bx0, bx1, lo_x, hi_x, g.half_w * e)
        for cy in centres(by0, by1, lo_y, hi_y, g.half_h * e)
    ]


def shape_scores(frames: Sequence[FrameMeasure], cut: bool = False) -> dict[str, float]:
    """Mean soft IoU of each shape's best-fitting template with the measured coverage. With ``cut`` (an object
    never wholly in the frame), frames cut by the frame edge also try the whole-shape placements of
    ``_cut_fits``: ~10-50x the fits, so only where no uncut frame exists."""
    scores = {s: 0.0 for s in vocab.SHAPES}
    for f in frames:
        hgt, wid = f.alpha.shape
        gx = np.arange(wid, dtype=np.float32) + f.origin[0] + 0.5
        gy = np.arange(hgt, dtype=np.float32) + f.origin[1] + 0.5
        bx0, by0, bx1, by1 = f.box
        for shape, g in GEOMETRY.items():
            extent = math.sqrt(f.area / g.area)
            fits = [
                (f.centroid[0], f.centroid[1] - g.centroid_y * extent, extent, extent),
                (
                    (bx0 + bx1) / 2,
                    (by0 + by1) / 2,
                    (bx1 - bx0 + 0.5) / (2 * g.half_w),
                    (by1 - by0 + 0.5) / (2 * g.half_h),
                ),
            ]
            if cut and any(f.touches):
                fits += _cut_fits(f, g)
            best = 0.0
            for cx, cy, ex, ey in fits:
                t = coverage(shape, gx[None, :] - cx, gy[:, None] - cy, max(ex, 1.0), max(ey, 1.0))
                best = max(
                    best, float(np.minimum(t, f.alpha).sum() / max(np.maximum(t, f.alpha).sum(), 1e-6))
                )
            scores[shape] += best / len(frames)
    return scores


@functools.lru_cache(maxsize=4096)
def border_reference(shape: str, side: int, extent: float, phase: float) -> float:
    """Coverage summed along a frame edge line (side 0-3: left, top, right, bottom) when ``shape``'s box
    touches that edge exactly from inside: a measured sum at least (about) this large means the shape reaches
    or crosses the edge. ``phase`` is the fractional pixel position of the box centre along the edge (thin
    tips straddle one or two pixels depending on it). Arguments are quantised so that results cache well."""
    return _border_reference(shape, side, round(extent * 4) / 4, round((phase % 1.0) * 16) / 16)


@functools.lru_cache(maxsize=16384)
def _border_reference(shape: str, side: int, extent: float, phase: float) -> float:
    g = GEOMETRY[shape]
    half_along, half_across = (g.half_h, g.half_w) if side in (0, 2) else (g.half_w, g.half_h)
    across = 0.5 - half_across * extent  # the edge pixels' centres, relative to the box centre
    reach = math.ceil(half_along * extent) + 2
    along = np.arange(-reach, reach + 1, dtype=np.float32) + 0.5 - phase  # pixel centres along the edge
    # Left/right and top/bottom are mirror images for every shape but the (up-pointing) triangle and star.
    sign = 1.0 if side in (0, 1) else -1.0
    if side in (0, 2):
        cov = coverage(shape, np.float32(sign * across), along, extent)
    else:
        cov = coverage(shape, along, np.float32(sign * across), extent)
    return float(cov.sum())
