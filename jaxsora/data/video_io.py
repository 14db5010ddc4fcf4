"""Video and image I/O: probe a file, read chosen frames at a chosen size, write videos and images.

PyAV (the ``video`` extra) is imported only inside the functions that need it, so the package imports
without it; images go through Pillow alone.

Sizes follow :mod:`jaxsora.data.source`: a frame is resized, keeping its aspect ratio, to the smallest size
that covers the request (:func:`~jaxsora.data.source.cover_size`), then centre-cropped
(:func:`~jaxsora.data.source.center_crop`). Video frames are scaled by swscale straight from their decoded
pixel format (bicubic, full-resolution chroma, accurate rounding: about five times faster than converting
to RGB and resizing with Pillow, and within ~1 grey level of a Lanczos resize on natural images); decoded
arrays (images, TFDS tensors) are scaled by :func:`resize_cover` with Pillow's antialiased bicubic.

Frame ``i`` of a video is the ``i``-th frame its decoder outputs, in presentation order, counted from the
start (no seeking). Frames carry their display orientation: a phone video tagged as rotated (display
matrix) and a JPEG with an EXIF orientation are returned upright, and :func:`probe` reports the upright
size; non-square pixels are stretched to square ones. Transparent pixels (GIF, PNG, WebP with alpha) are
composited over white.

Errors: anything wrong with a file (missing, empty, not a video, corrupt header, undecodable, truncated
before the frames asked for) raises :class:`~jaxsora.data.source.UnreadableClipError` with the path as
``source_id``, never a raw PyAV or Pillow error. Bad arguments (negative frame indices, a non-uint8 array
to write) raise ``ValueError``.

Truncated videos: the metadata can promise more frames than decode (a cut download, an edit list, a frame
count estimated from the duration). Decoding stops at the first decoder or demuxer error, as at the end
of the file. If every requested frame was decoded the read succeeds. If some were not, and the last
requested index lies at most ``max(2, 1%)`` frames past the last decodable one, those indices get the last
decodable frame (an off-by-a-few frame count is not worth dropping a clip for); further than that the
read raises ``UnreadableClipError`` (a file cut in half).
"""

from __future__ import annotations

import fractions
import math
import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from jaxsora.data.source import UnreadableClipError, center_crop, cover_size

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp"})
VIDEO_EXTENSIONS = frozenset({".mp4", ".m4v", ".webm", ".mov", ".mkv", ".avi", ".gif"})
IMAGE_FPS = 24.0  # the frame rate reported for a still image (a 1-frame clip; any positive value would do)
BACKGROUND = 255  # transparent pixels are composited over this grey level (white)

_MP4_CODECS = ("libx264", "h264", "mpeg4")
_ENCODERS = {
    ".mp4": _MP4_CODECS,
    ".m4v": _MP4_CODECS,
    ".mov": _MP4_CODECS,
    ".mkv": _MP4_CODECS,
    ".webm": ("libvpx-vp9", "libvpx"),
    ".avi": ("mpeg4", "libx264"),
}
_ENCODER_OPTIONS = {
    "libx264": {"crf": "18", "preset": "fast"},
    "libvpx-vp9": {"crf": "32", "b": "0", "deadline": "good", "cpu-used": "5", "row-mt": "1"},
    "libvpx": {"crf": "10", "b": "2M", "deadline": "good", "cpu-used": "4"},
}


def require_av() -> Any:
    """The ``av`` module (PyAV), or an ``ImportError`` saying how to install it."""
    try:
        import av
    except ImportError as e:
        raise ImportError(
            "reading and writing videos needs PyAV: pip install 'jaxsora[video]' (or pip install av)"
        ) from e
    return av


def is_image(path: str | os.PathLike) -> bool:
    """Whether ``path`` names a still image (by extension), read with Pillow as a 1-frame clip."""
    return os.path.splitext(os.fspath(path))[1].lower() in IMAGE_EXTENSIONS


# --------------------------------------------------------------------------------------------- arrays


def as_rgb(frames: np.ndarray) -> np.ndarray:
    """uint8 ``[..., H, W]`` (grey) or ``[..., H, W, C]`` with C in 1, 2, 3, 4 -> ``[..., H, W, 3]``.

    Alpha (C = 2 or 4) is composited over :data:`BACKGROUND`.
    """
    frames = np.asarray(frames)
    if frames.dtype != np.uint8:
        raise ValueError(f"expected uint8 pixels, got {frames.dtype}")
    if frames.ndim < 2:
        raise ValueError(f"expected [..., H, W(, C)] pixels, got shape {frames.shape}")
    if frames.ndim == 2 or frames.shape[-1] not in (1, 2, 3, 4):
        frames = frames[..., None]
    c = frames.shape[-1]
    if c in (2, 4):
        color, alpha = frames[..., : c - 1].astype(np.uint16), frames[..., c - 1 :].astype(np.uint16)
        frames = ((color * alpha + BACKGROUND * (255 - alpha) + 127) // 255).astype(np.uint8)
    if frames.shape[-1] == 1:
        frames = np.repeat(frames, 3, axis=-1)
    return frames


def resize_cover(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize uint8 ``[H, W, 3]`` or ``[T, H, W, 3]`` frames to cover ``height x width``, then centre-crop.

    The one resize of decoded arrays in the package (images, TFDS tensors): Pillow bicubic, antialiased
    when shrinking. Frames already at the requested size are returned as they are.
    """
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim not in (3, 4) or frames.shape[-1] != 3:
        raise ValueError(f"expected uint8 [(T,) H, W, 3] frames, got {frames.dtype} {frames.shape}")
    _check_size(height, width)
    h, w = frames.shape[-3], frames.shape[-2]
    if (h, w) == (height, width):
        return frames
    ch, cw = cover_size(h, w, height, width)
    if (ch, cw) != (h, w):
        flat = frames.reshape(-1, h, w, 3)
        flat = np.stack([_pil_resize(Image.fromarray(f), cw, ch) for f in flat])
        frames = flat.reshape(frames.shape[:-3] + (ch, cw, 3))
    return np.ascontiguousarray(center_crop(frames, height, width))


def _pil_resize(image: Image.Image, width: int, height: int) -> np.ndarray:
    if image.size != (width, height):
        image = image.resize((width, height), Image.Resampling.BICUBIC, reducing_gap=3.0)
    return np.asarray(image)


def _check_size(height: int, width: int) -> None:
    if int(height) < 1 or int(width) < 1:
        raise ValueError(f"the requested size must be positive, got {height}x{width}")


def _check_indices(frame_indices: Sequence[int]) -> list[int]:
    indices = [int(i) for i in frame_indices]
    if not indices:
        raise ValueError("frame_indices is empty")
    if min(indices) < 0:
        raise ValueError(f"frame indices must be >= 0, got {min(indices)}")
    return indices


# --------------------------------------------------------------------------------------------- probe


def probe(path: str | os.PathLike) -> tuple[int, int, int, float]:
    """``(num_frames, height, width, fps)`` of a video or image, from its metadata.

    Height and width are the displayed (upright, square-pixel) size. Where the container does not store a
    frame count (WebM, Matroska, some GIFs) the video packets are counted without decoding them. The first
    frame is decoded to read the rotation and to check that the stream decodes at all.
    """
    path = os.fspath(path)
    if is_image(path):
        return _probe_image(path)
    av = require_av()
    try:
        with av.open(path) as container:
            stream = _video_stream(container, path)
            stream.thread_type = "SLICE"  # frame threads would decode several frames to return the first
            num_frames = int(stream.frames or 0)
            first = None
            packets = 0
            error = ""
            for frame in _decode(container, stream, count_packets=num_frames <= 0):
                if isinstance(frame, int):  # the packet count, after the last packet
                    packets = frame
                    break
                if isinstance(frame, str):
                    error = f" ({frame})"
                    break
                if first is None:
                    first = frame
                    if num_frames > 0:
                        break
            if first is None:
                raise UnreadableClipError(path, f"no decodable video frames{error}")
            if num_frames <= 0:
                num_frames = max(packets, 1)
            height, width, _ = _display_geometry(first, stream)
            fps = _frame_rate(stream, container, num_frames)
    except UnreadableClipError:
        raise
    except Exception as e:
        raise UnreadableClipError(path, _reason(e)) from e
    return num_frames, height, width, fps


def _probe_image(path: str) -> tuple[int, int, int, float]:
    try:
        with Image.open(path) as image:
            width, height = image.size
            orientation = image.getexif().get(0x0112, 1)
    except Exception as e:
        raise UnreadableClipError(path, _reason(e)) from e
    if orientation in (5, 6, 7, 8):  # EXIF orientations that transpose the image
        height, width = width, height
    if height < 1 or width < 1:
        raise UnreadableClipError(path, f"empty image ({width}x{height})")
    return 1, height, width, IMAGE_FPS


def _video_stream(container: Any, path: str) -> Any:
    if not container.streams.video:
        raise UnreadableClipError(path, "no video stream")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    return stream


def _frame_rate(stream: Any, container: Any, num_frames: int) -> float:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate and 0 < float(rate) < 1000:
            return float(rate)
    duration = None
    if stream.duration and stream.time_base:
        duration = float(stream.duration * stream.time_base)
    elif container.duration:
        duration = container.duration / 1_000_000
    if duration and duration > 0 and num_frames > 1:
        return num_frames / duration
    return IMAGE_FPS


def _rotation(frame: Any) -> int:
    """Counter-clockwise quarter turns that make ``frame`` upright (from its display matrix)."""
    try:
        degrees = frame.rotation
    except Exception:
        return 0
    return round((degrees or 0) / 90) % 4


def _display_geometry(frame: Any, stream: Any) -> tuple[int, int, int]:
    """(height, width, quarter_turns) of ``frame`` as displayed: square pixels, rotated upright."""
    height, width = frame.height, frame.width
    sar = stream.sample_aspect_ratio
    if sar and sar > 0 and sar != 1:
        width = max(1, round(width * sar))
    turns = _rotation(frame)
    if turns % 2:
        height, width = width, height
    return height, width, turns


# --------------------------------------------------------------------------------------------- read


def read_frames(
    path: str | os.PathLike,
    frame_indices: Sequence[int],
    height: int | None = None,
    width: int | None = None,
) -> np.ndarray:
    """uint8 ``[len(frame_indices), height, width, 3]``: the given frames, resized to cover and centre-cropped.

    Indices may repeat and come in any order; only frames up to the largest one are decoded. ``height``
    and ``width`` default to the displayed size. An image is a 1-frame clip: every index must be 0. See
    the module docstring for what happens when the file ends early.
    """
    path = os.fspath(path)
    indices = _check_indices(frame_indices)
    if (height is None) != (width is None):
        raise ValueError("give both height and width, or neither")
    if height is not None:
        _check_size(height, width)
    if is_image(path):
        if max(indices) > 0:
            raise ValueError(f"{path} is an image (1 frame); got frame index {max(indices)}")
        frame = _read_image(path, height, width)
        return np.repeat(frame[None], len(indices), axis=0)
    av = require_av()
    try:
        with av.open(path) as container:
            stream = _video_stream(container, path)
            frames = _read_video(container, stream, path, indices, height, width)
    except UnreadableClipError:
        raise
    except Exception as e:
        raise UnreadableClipError(path, _reason(e)) from e
    return np.stack([frames[i] for i in indices])


def _read_image(path: str, height: int | None, width: int | None) -> np.ndarray:
    try:
        with Image.open(path) as image:
            if height is not None and image.format == "JPEG":
                # Let the JPEG decoder shrink by a power of two while staying above the needed size.
                oh, ow = image.size[1], image.size[0]
                orientation = image.getexif().get(0x0112, 1)
                dh, dw = (oh, ow) if orientation not in (5, 6, 7, 8) else (ow, oh)
                ch, cw = cover_size(dh, dw, height, width)
                if orientation in (5, 6, 7, 8):
                    ch, cw = cw, ch
                image.draft(None, (cw, ch))
            image = ImageOps.exif_transpose(image)
            array = _pil_to_rgb(image)
    except Exception as e:
        raise UnreadableClipError(path, _reason(e)) from e
    if height is None:
        return array
    return resize_cover(array, height, width)


def _pil_to_rgb(image: Image.Image) -> np.ndarray:
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):  # 16-bit / float grey: scale to 8 bits
        array = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or array.max(initial=0) > 255 else 255.0
        return as_rgb(np.clip(array * (255.0 / top) + 0.5, 0, 255).astype(np.uint8))
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info
    image = image.convert("RGBA" if has_alpha else "RGB")
    return as_rgb(np.asarray(image))


def _read_video(
    container: Any, stream: Any, path: str, indices: list[int], height: int | None, width: int | None
) -> dict[int, np.ndarray]:
    wanted = set(indices)
    last = max(indices)
    out: dict[int, np.ndarray] = {}
    decoded = 0
    previous = None
    error = ""
    for frame in _decode(container, stream):
        if isinstance(frame, str):  # a decoding error: treat as the end of the stream
            error = frame
            break
        if decoded in wanted:
            out[decoded] = _convert(frame, stream, height, width)
        previous = frame
        decoded += 1
        if decoded > last:
            break
    missing = [i for i in sorted(wanted) if i not in out]
    if not missing:
        return out
    detail = f" ({error})" if error else ""
    if previous is None:
        raise UnreadableClipError(path, f"no decodable video frames{detail}")
    slack = max(2, (last + 1) // 100)
    if last - (decoded - 1) > slack:
        raise UnreadableClipError(
            path, f"frame {last} requested but only {decoded} frames decode (truncated?){detail}"
        )
    fill = out.get(decoded - 1)
    if fill is None:
        fill = _convert(previous, stream, height, width)
    for i in missing:
        out[i] = fill
    return out


def _decode(container: Any, stream: Any, count_packets: bool = False) -> Iterator[Any]:
    """Decoded frames of ``stream``; on a demux/decode error yields the reason (a str) and stops.

    With ``count_packets``, decoding stops after the first frame but demuxing goes on, and the number of
    non-empty packets is yielded (an int) at the end.
    """
    av = require_av()
    packets = 0
    demuxer = container.demux(stream)
    decoding = True
    while True:
        try:
            packet = next(demuxer)
        except StopIteration:
            break
        except av.error.FFmpegError as e:
            if count_packets:
                break
            yield _reason(e)
            return
        if packet.size:
            packets += 1
        if not decoding:
            continue
        try:
            frames = packet.decode()
        except av.error.FFmpegError as e:
            if count_packets:
                decoding = False
                continue
            yield from _flush(stream)
            yield _reason(e)
            return
        for frame in frames:
            yield frame
            if count_packets:
                decoding = False
    if count_packets:
        if decoding:
            yield from _flush(stream)
        yield packets


def _flush(stream: Any) -> Iterator[Any]:
    """Frames still buffered in the decoder (B-frame reordering, frame threads) after an early stop."""
    try:
        frames = stream.codec_context.decode(None)
    except Exception:
        return
    yield from frames


def _convert(frame: Any, stream: Any, height: int | None, width: int | None) -> np.ndarray:
    """One decoded frame -> uint8 ``[height, width, 3]``, upright, covered and centre-cropped."""
    av = require_av()
    dh, dw, turns = _display_geometry(frame, stream)
    if height is None:
        height, width = dh, dw
    ch, cw = cover_size(dh, dw, height, width)
    sh, sw = (cw, ch) if turns % 2 else (ch, cw)  # the size to scale to before rotating
    if frame.format.name in _ALPHA_FORMATS or frame.format.has_palette:
        rgb = as_rgb(frame.to_ndarray(format="rgba"))
        if (sh, sw) != rgb.shape[:2]:
            rgb = _pil_resize(Image.fromarray(rgb), sw, sh)
    else:
        flags = av.video.reformatter.Interpolation
        interp = flags.BICUBIC | flags.FULL_CHR_H_INT | flags.FULL_CHR_H_INP | flags.ACCURATE_RND
        rgb = frame.reformat(width=sw, height=sh, format="rgb24", interpolation=interp).to_ndarray()
    if turns:
        rgb = np.rot90(rgb, turns)
    return np.ascontiguousarray(center_crop(rgb, height, width))


_ALPHA_FORMATS = frozenset(
    {"rgba", "bgra", "argb", "abgr", "ya8", "yuva420p", "yuva422p", "yuva444p", "rgba64le", "rgba64be"}
)


def _reason(e: BaseException) -> str:
    text = str(e).strip() or "no message"
    return f"{type(e).__name__}: {text}"


# --------------------------------------------------------------------------------------------- write


def write_video(path: str | os.PathLike, frames: np.ndarray, fps: float) -> None:
    """Write uint8 ``[T, H, W, 3]`` frames as a video chosen by extension.

    ``.mp4``/``.m4v``/``.mov``/``.mkv``: H.264 (libx264 when PyAV's ffmpeg has it, else MPEG-4 part 2);
    ``.webm``: VP9; ``.avi``: MPEG-4 part 2; ``.gif``: one adaptive 256-colour palette per frame
    (Pillow-quantized, written by ffmpeg so that repeated frames stay separate frames; GIF delays are in
    1/100 s, so 24 fps is stored as 25). Odd sizes are padded to even ones (repeating the last row or
    column) for the 4:2:0 codecs. A ``[H, W, 3]`` array is written as one frame.
    """
    path = os.fspath(path)
    frames = np.asarray(frames)
    if frames.ndim == 3:
        frames = frames[None]
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[0] < 1:
        raise ValueError(f"expected uint8 [T, H, W, C] frames, got {frames.dtype} {frames.shape}")
    frames = as_rgb(frames)
    if not (fps > 0 and math.isfinite(fps)):
        raise ValueError(f"fps must be positive, got {fps}")
    ext = os.path.splitext(path)[1].lower()
    if ext != ".gif" and ext not in _ENCODERS:
        raise ValueError(f"cannot write {ext!r} videos: use one of {sorted(_ENCODERS) + ['.gif']}")
    av = require_av()
    rate = fractions.Fraction(fps).limit_denominator(1001)
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    if ext == ".gif":
        _write_gif(av, path, frames, rate)
        return
    codec = next((c for c in _ENCODERS[ext] if _can_encode(av, c)), None)
    if codec is None:
        raise RuntimeError(f"PyAV's ffmpeg has none of the encoders {_ENCODERS[ext]} for {ext}")
    t, h, w, _ = frames.shape
    ph, pw = h + h % 2, w + w % 2
    if (ph, pw) != (h, w):
        frames = np.pad(frames, ((0, 0), (0, ph - h), (0, pw - w), (0, 0)), mode="edge")
    with av.open(path, "w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = pw, ph, "yuv420p"
        if codec in _ENCODER_OPTIONS:
            stream.options = dict(_ENCODER_OPTIONS[codec])
        else:  # mpeg4 and friends: a generous bit rate (about 1.5 bits per pixel per frame at 24 fps)
            stream.codec_context.bit_rate = int(max(2e5, 1.5 * pw * ph * float(rate)))
        for frame in frames:
            video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
            container.mux(stream.encode(video_frame))
        container.mux(stream.encode())


def _write_gif(av: Any, path: str, frames: np.ndarray, rate: fractions.Fraction) -> None:
    t, h, w, _ = frames.shape
    with av.open(path, "w", format="gif") as container:
        stream = container.add_stream("gif", rate=rate)
        stream.width, stream.height, stream.pix_fmt = w, h, "pal8"
        for frame in frames:
            quantized = Image.fromarray(frame).quantize(256, method=Image.Quantize.MEDIANCUT)
            rgb = np.asarray(quantized.getpalette()[:768], np.uint8).reshape(-1, 3)
            palette = np.zeros((256, 4), np.uint8)
            palette[:, 0] = 255  # ARGB, opaque
            palette[: len(rgb), 1:] = rgb
            video_frame = av.VideoFrame.from_ndarray((np.asarray(quantized), palette), format="pal8")
            container.mux(stream.encode(video_frame))
        container.mux(stream.encode())


def _can_encode(av: Any, codec: str) -> bool:
    try:
        av.codec.Codec(codec, "w")
    except Exception:
        return False
    return True


def write_image(path: str | os.PathLike, frame: np.ndarray) -> None:
    """Write one uint8 ``[H, W, 3]`` frame (grey and alpha accepted) as an image chosen by extension."""
    path = os.fspath(path)
    frame = np.asarray(frame)
    if frame.dtype != np.uint8 or frame.ndim not in (2, 3):
        raise ValueError(f"expected a uint8 [H, W, 3] frame, got {frame.dtype} {frame.shape}")
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    image = Image.fromarray(as_rgb(frame))
    ext = os.path.splitext(path)[1].lower()
    options = {"quality": 95} if ext in (".jpg", ".jpeg", ".webp") else {}
    image.save(path, **options)
