"""Small test media written on the fly: videos whose frames encode their index, patterned frames, broken files.

Index frames are flat grey with level ``BASE + STEP * i`` (survives lossy codecs and GIF palettes); a
frame's index is read back with :func:`frame_index`.
"""

from __future__ import annotations

import os
import pathlib

import numpy as np

from jaxsora.data import video_io

BASE, STEP = 16, 11  # grey level of frame i: 16 + 11 i (i < 21)


def index_frames(num_frames: int, height: int = 32, width: int = 48) -> np.ndarray:
    """uint8 [T, H, W, 3]; frame i is flat grey ``BASE + STEP * i``."""
    if BASE + STEP * (num_frames - 1) > 255:
        raise ValueError(f"at most {(255 - BASE) // STEP + 1} index frames")
    levels = (BASE + STEP * np.arange(num_frames)).astype(np.uint8)
    return np.broadcast_to(levels[:, None, None, None], (num_frames, height, width, 3)).copy()


def frame_index(frame: np.ndarray) -> int:
    """The index that :func:`index_frames` encoded in ``frame`` (from its central pixels)."""
    h, w = frame.shape[:2]
    level = float(frame[h // 4 : 3 * h // 4 + 1, w // 4 : 3 * w // 4 + 1].mean())
    return round((level - BASE) / STEP)


def edge_frames(num_frames: int, height: int, width: int, band: int) -> np.ndarray:
    """Grey frames with a coloured band along each edge: top red, bottom green, left blue, right yellow."""
    f = np.full((height, width, 3), 128, np.uint8)
    f[:band] = (255, 0, 0)
    f[-band:] = (0, 255, 0)
    f[:, :band] = (0, 0, 255)
    f[:, -band:] = (255, 255, 0)
    return np.repeat(f[None], num_frames, axis=0)


def column_frames(num_frames: int, height: int, width: int) -> np.ndarray:
    """Frames in vertical bands blue | grey | red, the outer bands a quarter of the width each.

    For a 1:2 frame the centre square is exactly the grey half, so a square request loses blue and red.
    """
    f = np.full((height, width, 3), 128, np.uint8)
    f[:, : width // 4] = (0, 0, 255)
    f[:, width - width // 4 :] = (255, 0, 0)
    return np.repeat(f[None], num_frames, axis=0)


def write_index_video(
    path: str | os.PathLike, num_frames: int = 20, height: int = 32, width: int = 48, fps=24.0
):
    video_io.write_video(path, index_frames(num_frames, height, width), fps)
    return pathlib.Path(path)


def write_rotated_mp4(
    path: str | os.PathLike, frames: np.ndarray, degrees: int, fps: int = 24
) -> pathlib.Path:
    """An H.264 mp4 whose display matrix rotates ``frames`` by ``degrees`` counter-clockwise (phone video)."""
    av = video_io.require_av()
    t, h, w, _ = frames.shape
    with av.open(os.fspath(path), "w") as container:
        stream = container.add_stream("libx264" if _can_encode("libx264") else "mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.set_display_rotation(degrees)
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return pathlib.Path(path)


def _can_encode(codec: str) -> bool:
    """Whether PyAV's ffmpeg can encode with ``codec``."""
    av = video_io.require_av()
    try:
        av.codec.Codec(codec, "w")
    except Exception:
        return False
    return True


# --------------------------------------------------------------------------------------------- broken files


def truncated_copy(src: str | os.PathLike, dst: str | os.PathLike, fraction: float = 0.5) -> pathlib.Path:
    data = pathlib.Path(src).read_bytes()
    pathlib.Path(dst).write_bytes(data[: int(len(data) * fraction)])
    return pathlib.Path(dst)


def random_bytes(path: str | os.PathLike, size: int = 4096, seed: int = 0) -> pathlib.Path:
    pathlib.Path(path).write_bytes(np.random.default_rng(seed).integers(0, 256, size, np.uint8).tobytes())
    return pathlib.Path(path)


def empty_file(path: str | os.PathLike) -> pathlib.Path:
    pathlib.Path(path).write_bytes(b"")
    return pathlib.Path(path)


def text_file(path: str | os.PathLike, text: str = "this is not an image\n") -> pathlib.Path:
    pathlib.Path(path).write_text(text)
    return pathlib.Path(path)
