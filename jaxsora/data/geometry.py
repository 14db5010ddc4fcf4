"""Planning a clip's output geometry from its native one: frame size under a pixel budget at the native
aspect ratio, and which native frames to read (frame-rate resampling, VAE-friendly durations, random crops).

Pure functions of numbers, so they are cheap to test and to run before any pixel is decoded.
"""

from __future__ import annotations

import math

import numpy as np


def plan_size(
    height: int,
    width: int,
    *,
    max_pixels: int,
    multiple: int,
    crop: str = "none",
    upscale: bool = False,
) -> tuple[int, int]:
    """The output ``(H, W)`` for a ``height x width`` clip.

    The aspect ratio is kept (``crop="square"`` makes it 1:1), the area is at most ``max_pixels`` (never more
    than the native area unless ``upscale``), and both sides are multiples of ``multiple`` (at least one
    ``multiple``). Rounding goes to the nearest multiple, then steps down whichever side keeps the aspect
    closest until the budget holds.
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"clip size must be positive, got {height}x{width}")
    if multiple <= 0 or max_pixels < multiple * multiple:
        raise ValueError(f"max_pixels={max_pixels} cannot hold one {multiple}x{multiple} block")
    if crop == "square":
        height = width = min(height, width)
    elif crop != "none":
        raise ValueError(f"crop must be 'none' or 'square', got {crop!r}")
    scale = math.sqrt(max_pixels / (height * width))
    if not upscale:
        scale = min(scale, 1.0)
    h = max(multiple, round(height * scale / multiple) * multiple)
    w = max(multiple, round(width * scale / multiple) * multiple)
    target = width / height
    while h * w > max_pixels:
        options = [(h - multiple, w), (h, w - multiple)]
        options = [(a, b) for a, b in options if a >= multiple and b >= multiple]
        h, w = min(options, key=lambda hw: abs(math.log((hw[1] / hw[0]) / target)))
    return h, w


def valid_num_frames(n: int, temporal_factor: int) -> int:
    """The largest count of the form ``1 + k * temporal_factor`` that is <= ``n`` (n >= 1)."""
    if n < 1:
        raise ValueError(f"a clip needs at least one frame, got {n}")
    return 1 + ((n - 1) // temporal_factor) * temporal_factor


def plan_frames(
    num_frames: int,
    fps: float,
    *,
    target_fps: float,
    max_frames: int,
    temporal_factor: int,
    rng: np.random.Generator | None = None,
    choices: tuple[int, ...] = (),
) -> tuple[list[int], float]:
    """Native frame indices to read and the output frame rate.

    Frames are taken every ``stride = round(fps / target_fps)`` native frames (1 when ``target_fps`` is 0 or
    above the native rate), as many as fit ``max_frames`` and the clip, cut to ``1 + k * temporal_factor``.
    ``choices`` (optional) restricts the count to a few values (fewer shape buckets: fewer compilations);
    the largest that fits is taken. With ``rng`` the window starts at a random frame, else at the first one.
    """
    if num_frames < 1:
        raise ValueError(f"a clip needs at least one frame, got {num_frames}")
    if num_frames == 1:
        return [0], float(fps)
    stride = max(1, round(fps / target_fps)) if target_fps > 0 else 1
    available = (num_frames - 1) // stride + 1
    n = valid_num_frames(min(available, max_frames), temporal_factor)
    if choices:
        bad = [c for c in choices if c < 1 or (c - 1) % temporal_factor]
        if bad:
            raise ValueError(f"frame choices {bad} are not of the form 1 + {temporal_factor}k")
        fitting = [c for c in choices if c <= n]
        n = max(fitting) if fitting else 1
    span = (n - 1) * stride + 1
    start = int(rng.integers(0, num_frames - span + 1)) if rng is not None else 0
    return [start + i * stride for i in range(n)], float(fps) / stride
