"""Small numpy image morphology for :mod:`describe` (scipy is not a dependency): 8-connected component
labelling by run-length union-find, and 3x3 dilation.

Labelling works on horizontal runs of set pixels, not pixels: runs are found with one ``diff``, runs in
consecutive rows that touch (8-connectivity) are linked with two ``searchsorted`` calls, and the run graph is
collapsed by min-label propagation with pointer jumping. The Python-level work is a handful of numpy calls
per iteration, independent of the image size.
"""

from __future__ import annotations

import numpy as np


def _runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows, starts and (exclusive) ends of the horizontal runs of ``mask`` [H, W], row-major order."""
    padded = np.zeros((mask.shape[0], mask.shape[1] + 2), np.int8)
    padded[:, 1:-1] = mask
    d = np.diff(padded, axis=1)
    rows, starts = np.nonzero(d == 1)
    _, ends = np.nonzero(d == -1)
    return rows, starts, ends


def label_runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """8-connected components of ``mask`` [H, W] as runs: ``(rows, starts, ends, component)`` where
    ``component`` numbers the components 0..K-1."""
    rows, starts, ends = _runs(mask)
    n = len(rows)
    if n == 0:
        return rows, starts, ends, np.zeros(0, np.int64)
    k = mask.shape[1] + 2
    start_keys = rows * k + starts
    end_keys = rows * k + ends
    # Runs b in the next row touching run a (8-connected): b.end >= a.start and b.start <= a.end.
    lo = np.searchsorted(end_keys, (rows + 1) * k + starts, side="left")
    hi = np.searchsorted(start_keys, (rows + 1) * k + ends, side="right")
    counts = np.maximum(hi - lo, 0)
    a = np.repeat(np.arange(n), counts)
    b = lo[a] + (np.arange(len(a)) - np.repeat(np.cumsum(counts) - counts, counts))
    parent = np.arange(n)
    while True:
        low = np.minimum(parent[a], parent[b])
        new = parent.copy()
        np.minimum.at(new, a, low)
        np.minimum.at(new, b, low)
        new = new[new]  # pointer jumping
        if np.array_equal(new, parent):
            break
        parent = new
    _, component = np.unique(parent, return_inverse=True)
    return rows, starts, ends, component


def paint_runs(shape: tuple[int, int], rows: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """The boolean mask [H, W] made of the given runs."""
    edges = np.zeros((shape[0], shape[1] + 1), np.int32)
    np.add.at(edges, (rows, starts), 1)
    np.add.at(edges, (rows, ends), -1)
    return np.cumsum(edges[:, :-1], axis=1) > 0


def remove_small(mask: np.ndarray, min_area: int, min_relative: float = 0.0) -> np.ndarray:
    """``mask`` without the 8-connected components smaller than ``min_area`` pixels or than ``min_relative``
    times the largest component."""
    rows, starts, ends, component = label_runs(mask)
    if len(rows) == 0:
        return mask
    areas = np.bincount(component, weights=ends - starts)
    keep = areas >= max(min_area, min_relative * areas.max())
    if keep.all():
        return mask
    k = keep[component]
    return paint_runs(mask.shape, rows[k], starts[k], ends[k])


def dilate(mask: np.ndarray, steps: int = 1) -> np.ndarray:
    """3x3 (8-neighbour) binary dilation of ``mask`` [H, W], ``steps`` times."""
    for _ in range(steps):
        p = np.pad(mask, 1)
        out = p[1:-1, 1:-1].copy()
        h, w = mask.shape
        for dy in range(3):
            for dx in range(3):
                out |= p[dy : dy + h, dx : dx + w]
        mask = out
    return mask
