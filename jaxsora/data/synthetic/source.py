"""``SyntheticWorld``: the procedural, captioned clip source (the project's default dataset and the ground
truth that generated videos are scored against).

Clip ``i`` of the world seeded ``seed`` is a pure function of ``(seed, i)`` (its scene is sampled from
``np.random.default_rng([seed, i])``), so any clip can be produced on its own, in any order, in any process:
Grain can shard, shuffle and resume by index. ``info`` samples the scene only (microseconds); ``load``
renders just the requested native frames, at exactly the requested size, and writes the captions from the
metadata of that window.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Sequence
from typing import Any

import numpy as np

from jaxsora.data.source import ClipInfo, LoadedClip
from jaxsora.data.synthetic.captions import descriptive_caption, short_caption
from jaxsora.data.synthetic.meta import window_meta
from jaxsora.data.synthetic.render import layout, render
from jaxsora.data.synthetic.scene import Scene, WorldConfig, sample_scene


class SyntheticWorld:
    """Procedurally rendered clips of 1-3 coloured shapes moving over a muted background.

    Native clips vary like real data: aspect ratios from ``aspect_ratios``, shorter sides from
    ``resolutions``, a fraction ``image_fraction`` of one-frame images, otherwise ``min_frames`` to
    ``max_frames`` frames at a rate from ``fps_choices`` (only rates that make the clip last >= 1 s are
    chosen, where the choices allow). ``load`` renders any window at any size (cover-resize then centre crop,
    like every source) and returns ``meta`` with per-object ground truth for that window (see
    :mod:`jaxsora.data.synthetic.meta`).
    """

    def __init__(
        self,
        num_clips: int = 100_000,
        seed: int = 0,
        image_fraction: float = 0.2,
        min_frames: int = 8,
        max_frames: int = 96,
        resolutions: Sequence[int] = (144, 240, 360, 480, 720),
        aspect_ratios: Sequence[str] = ("9:16", "3:4", "1:1", "4:3", "16:9", "21:9"),
        fps_choices: Sequence[int] = (8, 12, 24, 30),
    ):
        if num_clips <= 0:
            raise ValueError(f"num_clips must be positive, got {num_clips}")
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        self.num_clips = int(num_clips)
        self.seed = int(seed)
        self.config = WorldConfig(
            image_fraction=float(image_fraction),
            min_frames=int(min_frames),
            max_frames=int(max_frames),
            resolutions=tuple(int(r) for r in resolutions),
            aspect_ratios=tuple(aspect_ratios),
            fps_choices=tuple(int(f) for f in fps_choices),
        )

    def __len__(self) -> int:
        return self.num_clips

    def __repr__(self) -> str:
        return f"SyntheticWorld(num_clips={self.num_clips}, seed={self.seed}, config={self.config})"

    def _check_index(self, index: int) -> int:
        index = operator.index(index)
        if not 0 <= index < self.num_clips:
            raise ValueError(f"clip index {index} out of range [0, {self.num_clips})")
        return index

    def source_id(self, index: int) -> str:
        return f"synthetic/{self.seed}/{index}"

    def scene(self, index: int) -> Scene:
        """The resolution-free scene of clip ``index``."""
        return _cached_scene(self.seed, self._check_index(index), self.config)

    def info(self, index: int) -> ClipInfo:
        scene = self.scene(index)
        frames = list(range(scene.num_frames))
        meta = window_meta(scene, layout(scene, frames, scene.height, scene.width), frames)
        return ClipInfo(
            num_frames=scene.num_frames,
            height=scene.height,
            width=scene.width,
            fps=scene.fps,
            caption=descriptive_caption(meta),
            source_id=self.source_id(index),
        )

    def load(
        self,
        index: int,
        frame_indices: Sequence[int],
        height: int,
        width: int,
        rng: np.random.Generator | None = None,
    ) -> LoadedClip:
        scene = self.scene(index)
        frames = _check_frames(frame_indices, scene.num_frames, self.source_id(index))
        height, width = operator.index(height), operator.index(width)
        if height <= 0 or width <= 0:
            raise ValueError(f"{self.source_id(index)}: output size must be positive, got {height}x{width}")
        lay = layout(scene, frames, height, width)
        meta: dict[str, Any] = window_meta(scene, lay, frames)
        meta["source_id"] = self.source_id(index)
        return LoadedClip(
            frames=render(scene, lay),
            caption=descriptive_caption(meta, rng),
            short_caption=short_caption(meta),
            meta=meta,
            source_id=self.source_id(index),
        )


@functools.lru_cache(maxsize=4096)
def _cached_scene(seed: int, index: int, config: WorldConfig) -> Scene:
    # The pipeline calls info(i) then load(i): sampling once saves the rejection sampling the second time.
    return sample_scene(seed, index, config)


def _check_frames(frame_indices: Sequence[int], num_frames: int, source_id: str) -> list[int]:
    array = np.asarray(frame_indices)
    if array.size == 0:
        raise ValueError(f"{source_id}: frame_indices is empty")
    if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(
            f"{source_id}: frame_indices must be a flat sequence of integers, got {frame_indices!r}"
        )
    frames = [int(i) for i in array]
    bad = [i for i in frames if not 0 <= i < num_frames]
    if bad:
        raise ValueError(
            f"{source_id}: frame indices {bad[:5]} outside the clip's {num_frames} native frames"
        )
    if any(b <= a for a, b in zip(frames, frames[1:], strict=False)):
        raise ValueError(f"{source_id}: frame_indices must be strictly increasing, got {frames[:8]}...")
    return frames
