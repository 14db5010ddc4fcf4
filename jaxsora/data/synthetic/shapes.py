"""Shape geometry: signed distance functions and anti-aliased coverage, shared by the renderer and by
:mod:`describe` (which fits the same shapes to pixels).

Every shape lives in *unit* coordinates: centred on its bounding box, y pointing down, largest bounding-box
side 1 (the object's "extent"), no rotation (triangles and stars point up). Circle, square and triangle have
a square bounding box; the five-pointed star is 1.05 times wider than tall.

Coverage of a pixel is ``clip(0.5 - sdf_in_pixels, 0, 1)``: one pixel of linear ramp across the boundary,
which is the usual cheap, good-looking anti-aliasing and integrates to (almost exactly) the shape's area.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from jaxsora.data.synthetic.vocab import SHAPES

STAR_INNER_RATIO = (
    0.42  # inner / outer radius (a regular pentagram has 0.382; a little fatter renders better)
)


@dataclasses.dataclass(frozen=True)
class ShapeGeometry:
    """Unit-extent facts about a shape: half sizes of its bounding box, area, and its area centroid (relative to
    the bounding-box centre). ``describe`` uses them to turn a measured area into an extent and to place
    templates."""

    name: str
    half_w: float
    half_h: float
    area: float  # area / extent**2
    centroid_y: float  # area centroid minus bbox centre, in extents (x is 0 for every shape)
    polygon: np.ndarray | None  # [V, 2] vertices (x, y) for polygons, None for the circle and square
    # Where along the box side the shape touches it, per box edge (x0, y0, x1, y1), as (lo, hi) fractions
    # of the perpendicular side (0 = top / left): a circle touches its box at the middle of each side, a
    # square along whole sides, a triangle its left/right sides at the bottom corners.
    extremes: tuple[tuple[float, float], ...] = ((0.0, 1.0),) * 4


def _polygon_area_centroid(v: np.ndarray) -> tuple[float, float]:
    x, y = v[:, 0], v[:, 1]
    xn, yn = np.roll(x, -1), np.roll(y, -1)
    cross = x * yn - xn * y
    area = cross.sum() / 2
    cy = ((y + yn) * cross).sum() / (6 * area)
    return abs(float(area)), float(cy)


def _star_vertices() -> np.ndarray:
    angles = -math.pi / 2 + np.arange(10) * math.pi / 5  # outer points at even indices, top first
    radii = np.where(np.arange(10) % 2 == 0, 1.0, STAR_INNER_RATIO)
    v = np.stack([radii * np.cos(angles), radii * np.sin(angles)], -1)
    x0, x1, y0, y1 = v[:, 0].min(), v[:, 0].max(), v[:, 1].min(), v[:, 1].max()
    v = v - [(x0 + x1) / 2, (y0 + y1) / 2]
    return v / max(x1 - x0, y1 - y0)


def _polygon_extremes(v: np.ndarray) -> tuple[tuple[float, float], ...]:
    x0, y0, x1, y1 = v[:, 0].min(), v[:, 1].min(), v[:, 0].max(), v[:, 1].max()
    w, h, tol = x1 - x0, y1 - y0, 1e-9

    def span(on_edge: np.ndarray, coord: np.ndarray, lo: float, size: float) -> tuple[float, float]:
        c = (coord[on_edge] - lo) / size
        return float(c.min()), float(c.max())

    return (
        span(v[:, 0] <= x0 + tol, v[:, 1], y0, h),
        span(v[:, 1] <= y0 + tol, v[:, 0], x0, w),
        span(v[:, 0] >= x1 - tol, v[:, 1], y0, h),
        span(v[:, 1] >= y1 - tol, v[:, 0], x0, w),
    )


def _make_geometry() -> dict[str, ShapeGeometry]:
    triangle = np.array([[0.0, -0.5], [0.5, 0.5], [-0.5, 0.5]])
    star = _star_vertices()
    t_area, t_cy = _polygon_area_centroid(triangle)
    s_area, s_cy = _polygon_area_centroid(star)
    return {
        "circle": ShapeGeometry("circle", 0.5, 0.5, math.pi / 4, 0.0, None, ((0.5, 0.5),) * 4),
        "square": ShapeGeometry("square", 0.5, 0.5, 1.0, 0.0, None),
        "triangle": ShapeGeometry("triangle", 0.5, 0.5, t_area, t_cy, triangle, _polygon_extremes(triangle)),
        "star": ShapeGeometry(
            "star",
            float(star[:, 0].max()),
            float(star[:, 1].max()),
            s_area,
            s_cy,
            star,
            _polygon_extremes(star),
        ),
    }


GEOMETRY: dict[str, ShapeGeometry] = _make_geometry()
assert tuple(GEOMETRY) == SHAPES


def _polygon_sdf(x: np.ndarray, y: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Exact signed distance to a polygon (negative inside), vectorised over points; loops over edges only."""
    d = (x - v[0, 0]) ** 2 + (y - v[0, 1]) ** 2
    inside = np.zeros(np.broadcast_shapes(x.shape, y.shape), dtype=bool)
    n = len(v)
    for i in range(n):
        (xi, yi), (xj, yj) = v[i], v[(i + 1) % n]
        ex, ey = xj - xi, yj - yi
        wx, wy = x - xi, y - yi
        t = np.clip((wx * ex + wy * ey) * (1.0 / (ex * ex + ey * ey)), 0.0, 1.0)
        bx, by = wx - ex * t, wy - ey * t
        np.minimum(d, bx * bx + by * by, out=d)
        # Even-odd crossing test of a horizontal ray to the right.
        crosses = (y >= yi) != (y >= yj)
        inside ^= crosses & ((ex * wy > ey * wx) == (yj > yi))
    dist = np.sqrt(d)
    return np.where(inside, -dist, dist)


def unit_sdf(shape: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Signed distance (in extents) from unit-coordinate points ``(x, y)`` to ``shape``; negative inside."""
    if shape == "circle":
        return np.sqrt(x * x + y * y) - 0.5
    if shape == "square":
        qx, qy = np.abs(x) - 0.5, np.abs(y) - 0.5
        outside = np.sqrt(np.maximum(qx, 0.0) ** 2 + np.maximum(qy, 0.0) ** 2)
        return outside + np.minimum(np.maximum(qx, qy), 0.0)
    geometry = GEOMETRY.get(shape)
    if geometry is None:
        raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")
    return _polygon_sdf(x, y, geometry.polygon)


def coverage(shape: str, dx: np.ndarray, dy: np.ndarray, extent_x: float | np.ndarray, extent_y=None):
    """Anti-aliased coverage in [0, 1] of pixels whose centres are ``(dx, dy)`` pixels from the shape's
    bounding-box centre, for a shape ``extent_x`` pixels across its largest side.

    ``extent_y`` (default: the same) stretches the shape vertically by ``extent_y / extent_x``; describe uses
    it to fit templates to slightly distorted blobs. Arrays broadcast (e.g. ``[T, 1, W]`` with ``[T, H, 1]``
    and per-frame extents ``[T, 1, 1]``).
    """
    ex = np.asarray(extent_x, dtype=np.float32)
    ey = ex if extent_y is None else np.asarray(extent_y, dtype=np.float32)
    sdf = unit_sdf(shape, dx / ex, dy / ey) * np.minimum(ex, ey)
    return np.clip(0.5 - sdf, 0.0, 1.0)
