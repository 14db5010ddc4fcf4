"""A small in-memory ClipSource for pipeline tests: each clip's pixels encode (index, frame)."""

from __future__ import annotations

import numpy as np

from jaxsora.data.source import ClipInfo, LoadedClip, UnreadableClipError

GEOMETRIES = [  # (frames, height, width, fps)
    (1, 720, 1280, 24.0),
    (40, 1280, 720, 24.0),  # 9:16
    (64, 360, 640, 30.0),
    (20, 480, 480, 12.0),
    (33, 600, 1400, 8.0),  # 21:9
    (1, 768, 1024, 24.0),
]


class FakeSource:
    def __init__(self, n: int = 60, broken: tuple[int, ...] = ()):
        self.n = n
        self.broken = set(broken)

    def __len__(self) -> int:
        return self.n

    def info(self, index: int) -> ClipInfo:
        if index in self.broken:
            raise UnreadableClipError(f"fake/{index}", "corrupt")
        t, h, w, fps = GEOMETRIES[index % len(GEOMETRIES)]
        return ClipInfo(t, h, w, fps, caption=f"clip number {index}", source_id=f"fake/{index}")

    def load(self, index, frame_indices, height, width, rng=None) -> LoadedClip:
        frames = np.zeros((len(frame_indices), height, width, 3), np.uint8)
        frames[..., 0] = index % 256
        frames[..., 1] = np.asarray(frame_indices, np.uint8)[:, None, None]
        return LoadedClip(
            frames, caption=f"clip number {index}", short_caption=f"#{index}", source_id=f"fake/{index}"
        )
