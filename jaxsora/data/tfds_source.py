"""A prepared TensorFlow Datasets dataset as a :class:`~jaxsora.data.source.ClipSource`, without TensorFlow.

Records are read with ``tfds.data_source`` (random access over the ``array_record`` files; prepare the
dataset with ``file_format="array_record"``), which parses ``tf.train.Example`` protos in NumPy: TensorFlow
is not needed. ``name`` is a registered dataset name (``"ucf101"``, ``"my_set/config:1.0.0"``) found under
``data_dir``, or the path of a prepared dataset's version folder (the one holding ``features.json``).

Features, detected when ``video_key`` / ``text_key`` are not given (nested features as ``"a/b"``):

- video, first choice: ``tfds.features.Video`` or a ``Sequence(Image)`` (encoded frames: only the frames
  asked for are decoded, with Pillow), or a uint8 ``Tensor`` / ``Sequence(Tensor)`` of shape
  ``(T, H, W, C)``; else an image: ``tfds.features.Image`` or a uint8 ``(H, W, C)`` tensor, read as a
  1-frame clip. C may be 1 (grey), 3, or 4 (alpha, composited over white). Several candidates are
  resolved by name (``video``, ``frames``, ``rgb``, ``image``, ...) or refused with the list.
- caption: a ``Text`` feature (bytes decoded as UTF-8), preferring ``caption``/``text``/``description``;
  without one, a ``ClassLabel``'s name (``"ApplyEyeMakeup"`` for UCF101); without either, ``""``.
  A ``Text`` feature named ``short_caption`` becomes the short caption.
- fps: a scalar feature named ``fps`` or ``frame_rate`` in the record, else ``fps`` in the dataset's
  metadata (``DatasetInfo.metadata``), else the ``fps`` argument (24).

Without TensorFlow, ``tfds.features.Video`` cannot be constructed (its ``__init__`` calls
``tf.dtypes.as_dtype``), so a dataset declaring one fails to load through TFDS alone. Its records hold a
sequence of encoded images, exactly what ``Sequence(Image(encoding_format=...))`` reads, so when loading
fails for want of TensorFlow this module reloads the dataset from its files with ``Video`` read as that
``Sequence``. A ``Video`` dataset from its generation code cannot be prepared without TensorFlow, nor can
an ``Image`` feature be encoded from a NumPy array (pass a ``PIL.Image``, a path or encoded bytes), nor
does ``tfds.dataset_builders.store_as_tfds_dataset`` work (it checks for ``tf.data.Dataset``): a
``GeneratorBasedBuilder`` subclass prepared with ``file_format="array_record"`` does.

``info(i)`` reads record ``i`` without decoding pixels (encoded frames: one image header; tensors: the
record's shape) and keeps the result in a bounded per-process LRU; the record last read by each thread is
kept for the ``load`` that follows. A record that fails to read or decode raises
:class:`~jaxsora.data.source.UnreadableClipError`. The source pickles without its open files (Grain sends
it to worker processes, which reopen the dataset).
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
import os
import re
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from PIL import Image

from jaxsora.data import video_io
from jaxsora.data.source import ClipInfo, InfoCache, LoadedClip, UnreadableClipError

log = logging.getLogger(__name__)

VIDEO_NAMES = ("video", "videos", "frames", "rgb", "clip", "image_sequence", "image", "images")
TEXT_NAMES = ("caption", "captions", "text", "description", "prompt", "sentence", "title", "label_text")
SHORT_TEXT_NAMES = ("short_caption", "short_text")
FPS_NAMES = ("fps", "frame_rate", "framerate")

# kinds of video feature
ENCODED_VIDEO = "encoded_video"  # Video / Sequence(Image): a list of encoded frames
TENSOR_VIDEO = "tensor_video"  # uint8 [T, H, W, C]
ENCODED_IMAGE = "encoded_image"  # Image: one encoded frame
TENSOR_IMAGE = "tensor_image"  # uint8 [H, W, C]


def require_tfds() -> Any:
    """The ``tensorflow_datasets`` module, or an ``ImportError`` saying how to install it."""
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise ImportError(
            "reading TFDS datasets needs tensorflow-datasets and array-record (TensorFlow is not needed): "
            "pip install 'jaxsora[tfds]'"
        ) from e
    return tfds


class TfdsSource:
    """Clips from one split of a prepared TFDS dataset (``array_record`` files).

    Args:
        name: a dataset name (``"name"``, ``"name/config"``, ``"name:1.0.0"``) or a dataset version folder.
        split: a split, TFDS slicing included (``"train[:90%]"``).
        data_dir: where the prepared dataset lives (TFDS's default ``~/tensorflow_datasets`` if None).
        video_key: the video (or image) feature; detected if None.
        text_key: the caption feature (``Text`` or ``ClassLabel``); detected if None.
        fps: the frame rate when neither the records nor the dataset's metadata give one.
        cache_size: how many clips' ``info`` each process remembers.
    """

    def __init__(
        self,
        name: str,
        split: str = "train",
        data_dir: str | os.PathLike | None = None,
        video_key: str | None = None,
        text_key: str | None = None,
        fps: float = 24.0,
        cache_size: int = 4096,
    ):
        if not fps > 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.name = os.fspath(name)
        self.split = split
        self.data_dir = os.fspath(data_dir) if data_dir is not None else None
        self.default_fps = float(fps)
        self.cache_size = cache_size
        self._open()
        features = _flatten_features(self._builder.info.features)
        self.video_key, self.video_kind = _detect_video(features, video_key, self._describe(features))
        self.text_key, self.text_kind = _detect_text(features, text_key, self._describe(features))
        self.short_text_key = next(
            (k for k in features if _leaf(k) in SHORT_TEXT_NAMES and _kind_of_text(features[k]) == "text"),
            None,
        )
        if self.short_text_key == self.text_key:
            self.short_text_key = None
        self.fps_key = next((k for k in features if _leaf(k) in FPS_NAMES and _is_scalar(features[k])), None)
        metadata = getattr(self._builder.info, "metadata", None) or {}
        meta_fps = metadata.get("fps") if hasattr(metadata, "get") else None
        self.metadata_fps = float(meta_fps) if isinstance(meta_fps, int | float) and meta_fps > 0 else None
        self.label_names = (
            list(features[self.text_key].names) if self.text_kind == "label" else None
        )  # ClassLabel index -> name, kept so workers need not look it up
        if self.text_key is None:
            log.warning("%s: no Text or ClassLabel feature; captions will be empty", self.name)
        self._length = len(self._data_source())

    # ----------------------------------------------------------------------------------------- opening

    def _open(self) -> None:
        self._builder = _load_builder(self.name, self.data_dir)
        self._ds = None
        self._infos = InfoCache(self.cache_size)
        self._lock = threading.Lock()
        self._local = threading.local()

    def _data_source(self) -> Any:
        if self._ds is None:
            with self._lock:
                if self._ds is None:
                    decoders = None
                    if self.__dict__.get("video_kind") in (ENCODED_VIDEO, ENCODED_IMAGE):
                        decoders = _nest({self.video_key: _raw_decoder()})
                    self._ds = self._builder.as_data_source(split=self.split, decoders=decoders)
        return self._ds

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for key in ("_builder", "_ds", "_infos", "_lock", "_local"):
            del state[key]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._open()

    def _describe(self, features: dict[str, Any]) -> str:
        return f"{self.name} features: " + ", ".join(
            f"{k} ({type(f).__name__}{_tensor_info(f)})" for k, f in features.items()
        )

    # ----------------------------------------------------------------------------------------- ClipSource

    def __len__(self) -> int:
        return self._length

    def __repr__(self) -> str:
        return (
            f"TfdsSource({self.name!r}, split={self.split!r}, {len(self)} clips, "
            f"video={self.video_key!r} ({self.video_kind}), text={self.text_key!r})"
        )

    def source_id(self, index: int) -> str:
        return f"tfds:{self.name}/{self.split}/{index}"

    def info(self, index: int) -> ClipInfo:
        index = self._check_index(index)
        cached = self._infos.get(index)
        if cached is not None:
            return cached
        record = self._record(index)
        sid = self.source_id(index)
        try:
            num_frames, height, width = self._geometry(record)
        except UnreadableClipError:
            raise
        except Exception as e:
            raise UnreadableClipError(sid, video_io._reason(e)) from e
        if num_frames < 1 or height < 1 or width < 1:
            raise UnreadableClipError(sid, f"empty clip ({num_frames}x{height}x{width})")
        caption, _ = self._captions(record)
        info = ClipInfo(num_frames, height, width, self._fps(record), caption=caption, source_id=sid)
        return self._infos.put(index, info)

    def load(
        self,
        index: int,
        frame_indices: Sequence[int],
        height: int,
        width: int,
        rng: np.random.Generator | None = None,
    ) -> LoadedClip:
        index = self._check_index(index)
        indices = [int(i) for i in frame_indices]
        if not indices or min(indices) < 0:
            raise ValueError(f"frame_indices must be non-empty and >= 0, got {list(frame_indices)}")
        record = self._record(index)
        sid = self.source_id(index)
        value = _get(record, self.video_key)
        try:
            frames = self._frames(value, indices, sid)
            frames = video_io.resize_cover(frames, height, width)
        except (UnreadableClipError, IndexError, ValueError):
            raise
        except Exception as e:
            raise UnreadableClipError(sid, video_io._reason(e)) from e
        caption, short_caption = self._captions(record)
        meta = {"tfds": self.name, "split": self.split, "index": index, "fps": self._fps(record)}
        return LoadedClip(frames, caption=caption, short_caption=short_caption, meta=meta, source_id=sid)

    # ----------------------------------------------------------------------------------------- records

    def _check_index(self, index: int) -> int:
        index = int(index)
        if not 0 <= index < self._length:
            raise IndexError(f"clip index {index} outside [0, {self._length})")
        return index

    def _record(self, index: int) -> dict[str, Any]:
        """Record ``index`` with encoded frames left encoded; the last one read by this thread is reused."""
        last = getattr(self._local, "last", None)
        if last is not None and last[0] == index:
            return last[1]
        try:
            record = self._data_source()[index]
        except Exception as e:
            raise UnreadableClipError(self.source_id(index), video_io._reason(e)) from e
        self._local.last = (index, record)
        return record

    def _geometry(self, record: dict[str, Any]) -> tuple[int, int, int]:
        value = _get(record, self.video_key)
        if self.video_kind == ENCODED_VIDEO:
            if len(value) == 0:
                return 0, 0, 0
            w, h = _image_size(value[0])
            return len(value), h, w
        if self.video_kind == ENCODED_IMAGE:
            w, h = _image_size(value)
            return 1, h, w
        shape = np.shape(value)
        if self.video_kind == TENSOR_VIDEO:
            return shape[0], shape[1], shape[2]
        return 1, shape[0], shape[1]

    def _frames(self, value: Any, indices: list[int], sid: str) -> np.ndarray:
        if self.video_kind in (ENCODED_IMAGE, TENSOR_IMAGE):
            if max(indices) > 0:
                raise IndexError(f"{sid} is an image (1 frame); got frame index {max(indices)}")
            frame = _decode_image(value, sid) if self.video_kind == ENCODED_IMAGE else _array(value)
            return np.repeat(video_io.as_rgb(frame)[None], len(indices), axis=0)
        count = len(value)
        if max(indices) >= count:
            raise IndexError(f"{sid} has {count} frames; got frame index {max(indices)}")
        if self.video_kind == ENCODED_VIDEO:
            decoded = {i: video_io.as_rgb(_decode_image(value[i], sid)) for i in sorted(set(indices))}
            shapes = {f.shape for f in decoded.values()}
            if len(shapes) > 1:
                raise UnreadableClipError(sid, f"frames of different sizes {sorted(shapes)}")
            return np.stack([decoded[i] for i in indices])
        return video_io.as_rgb(_array(value)[indices])

    def _captions(self, record: dict[str, Any]) -> tuple[str, str]:
        caption = ""
        if self.text_kind == "text":
            caption = _text(_get(record, self.text_key))
        elif self.text_kind == "label":
            label = int(np.asarray(_get(record, self.text_key)).reshape(-1)[0])
            names = self.label_names or []
            caption = names[label] if 0 <= label < len(names) else str(label)
        short = _text(_get(record, self.short_text_key)) if self.short_text_key else ""
        return caption, short

    def _fps(self, record: dict[str, Any]) -> float:
        if self.fps_key is not None:
            value = float(np.asarray(_get(record, self.fps_key)).reshape(-1)[0])
            if value > 0 and np.isfinite(value):
                return value
        return self.metadata_fps or self.default_fps


# --------------------------------------------------------------------------------------------- features


def _flatten_features(features: Any, prefix: str = "") -> dict[str, Any]:
    """{"a/b": feature} for a (nested) FeaturesDict, in sorted key order."""
    tfds = require_tfds()
    out: dict[str, Any] = {}
    for key, feature in sorted(features.items()):
        name = f"{prefix}{key}"
        if isinstance(feature, tfds.features.FeaturesDict):
            out.update(_flatten_features(feature, f"{name}/"))
        else:
            out[name] = feature
    return out


def _leaf(key: str) -> str:
    return key.rsplit("/", 1)[-1].lower()


def _tensor_info(feature: Any) -> str:
    if _kind_of_text(feature) is not None:
        return ""
    try:
        info = feature.get_tensor_info()
        return f" {np.dtype(info.np_dtype).name}{tuple(info.shape)}"
    except Exception:
        return "?"


def _kind_of_video(feature: Any) -> str | None:
    tfds = require_tfds()
    if isinstance(feature, tfds.features.Text | tfds.features.ClassLabel):
        return None
    if isinstance(feature, tfds.features.Image):
        return ENCODED_IMAGE if _image_ok(feature) else None
    if isinstance(feature, tfds.features.Sequence) and isinstance(feature.feature, tfds.features.Image):
        return ENCODED_VIDEO if _image_ok(feature.feature) else None
    try:
        info = feature.get_tensor_info()
    except Exception:
        return None
    if not hasattr(info, "shape") or np.dtype(info.np_dtype) != np.uint8:
        return None
    shape = tuple(info.shape)
    if len(shape) == 4 and shape[-1] in (1, 3, 4):
        return TENSOR_VIDEO
    if len(shape) == 3 and shape[-1] in (1, 3, 4):
        return TENSOR_IMAGE
    return None


def _image_ok(image_feature: Any) -> bool:
    shape = tuple(image_feature.shape)
    return np.dtype(image_feature.np_dtype) == np.uint8 and (not shape or shape[-1] in (None, 1, 3, 4))


def _kind_of_text(feature: Any) -> str | None:
    tfds = require_tfds()
    if isinstance(feature, tfds.features.Text):
        return "text"
    if isinstance(feature, tfds.features.ClassLabel) and feature.num_classes:
        return "label"
    return None


def _is_scalar(feature: Any) -> bool:
    try:
        info = feature.get_tensor_info()
        return tuple(info.shape) == () and np.issubdtype(np.dtype(info.np_dtype), np.number)
    except Exception:
        return False


def _pick(candidates: list[str], preferred: tuple[str, ...], what: str, arg: str, described: str) -> str:
    if len(candidates) == 1:
        return candidates[0]
    for name in preferred:
        matches = [c for c in candidates if _leaf(c) == name]
        if len(matches) == 1:
            return matches[0]
    raise ValueError(f"several {what} features ({', '.join(candidates)}): pass {arg}=... ({described})")


def _detect_video(features: dict[str, Any], key: str | None, described: str) -> tuple[str, str]:
    if key is not None:
        if key not in features:
            raise ValueError(f"video_key {key!r} is not a feature ({described})")
        kind = _kind_of_video(features[key])
        if kind is None:
            raise ValueError(
                f"video_key {key!r} is not a video or image feature (uint8 Video, Sequence(Image), Image, "
                f"or Tensor of shape (T, H, W, C) / (H, W, C) with C in 1, 3, 4) ({described})"
            )
        return key, kind
    kinds = {k: _kind_of_video(f) for k, f in features.items()}
    videos = [k for k, kind in kinds.items() if kind in (ENCODED_VIDEO, TENSOR_VIDEO)]
    images = [k for k, kind in kinds.items() if kind in (ENCODED_IMAGE, TENSOR_IMAGE)]
    if not videos and not images:
        raise ValueError(
            "no video or image feature found (looked for uint8 Video, Sequence(Image), Image, or Tensor of "
            f"shape (T, H, W, C) / (H, W, C)); pass video_key=... ({described})"
        )
    chosen = _pick(videos or images, VIDEO_NAMES, "video" if videos else "image", "video_key", described)
    return chosen, kinds[chosen]


def _detect_text(features: dict[str, Any], key: str | None, described: str) -> tuple[str | None, str | None]:
    if key is not None:
        if key not in features:
            raise ValueError(f"text_key {key!r} is not a feature ({described})")
        kind = _kind_of_text(features[key])
        if kind is None:
            raise ValueError(f"text_key {key!r} is neither a Text nor a ClassLabel feature ({described})")
        return key, kind
    kinds = {k: _kind_of_text(f) for k, f in features.items() if _leaf(k) not in SHORT_TEXT_NAMES}
    texts = [k for k, kind in kinds.items() if kind == "text"]
    if texts:
        return _pick(texts, TEXT_NAMES, "text", "text_key", described), "text"
    labels = [k for k, kind in kinds.items() if kind == "label"]
    if labels:
        return _pick(labels, ("label", "labels", "class", "action"), "label", "text_key", described), "label"
    return None, None


# --------------------------------------------------------------------------------------------- values


def _get(record: dict[str, Any], key: str) -> Any:
    value: Any = record
    for part in key.split("/"):
        value = value[part]
    return value


def _nest(flat: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in flat.items():
        node = out
        *parents, leaf = key.split("/")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def _text(value: Any) -> str:
    if isinstance(value, np.ndarray):
        value = value.reshape(-1)[0] if value.size else b""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace").strip()
    return str(value).strip()


def _array(value: Any) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype != np.uint8:
        raise ValueError(f"expected uint8 pixels, got {array.dtype}")
    return array


def _as_bytes(value: Any) -> bytes:
    if isinstance(value, np.ndarray):
        value = value.item() if value.shape == () else value.tobytes()
    return bytes(value)


def _image_size(value: Any) -> tuple[int, int]:
    """(width, height) of an encoded image, from its header."""
    with Image.open(io.BytesIO(_as_bytes(value))) as image:
        return image.size


def _decode_image(value: Any, sid: str) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(_as_bytes(value))) as image:
            return video_io._pil_to_rgb(image)
    except Exception as e:
        raise UnreadableClipError(sid, f"undecodable frame: {video_io._reason(e)}") from e


# --------------------------------------------------------------------------------------------- loading

_RAW_DECODER: Any = None


def _raw_decoder() -> Any:
    """A decoder that hands back encoded frames as bytes (``SkipDecoding`` lacks the NumPy batch path)."""
    global _RAW_DECODER
    if _RAW_DECODER is None:
        tfds = require_tfds()

        class RawBytes(tfds.decode.Decoder):
            def decode_example(self, serialized_example: Any) -> Any:
                return serialized_example

            def decode_example_np(self, serialized_example: Any) -> Any:
                return serialized_example

            def decode_batch_example_np(self, serialized_example: Any) -> Any:
                return serialized_example

        _RAW_DECODER = RawBytes
    return _RAW_DECODER()


def _needs_tensorflow(error: BaseException | None) -> bool:
    """Whether ``error`` (or an exception it was raised from) is a failed import of TensorFlow."""
    while error is not None:
        if isinstance(error, ImportError):
            module = (error.name or "").split(".")[0]
            if module == "tensorflow" or (not module and re.search(r"\btensorflow\b", str(error))):
                return True
        error = error.__cause__ or error.__context__
    return False


def _load_builder(name: str, data_dir: str | None) -> Any:
    tfds = require_tfds()
    is_dir = os.path.isdir(name) and os.path.isfile(os.path.join(name, "features.json"))

    def load() -> Any:
        if is_dir:
            return tfds.builder_from_directory(name)
        return tfds.builder(name, data_dir=data_dir)

    if importlib.util.find_spec("tensorflow") is not None:
        return load()
    with _video_as_image_sequence():
        try:
            return load()
        except Exception as e:
            if is_dir or not _needs_tensorflow(e):
                raise
        # The registered builder class itself builds a Video in _info(): read the prepared files instead.
        log.info("%s: the builder class needs TensorFlow; loading the prepared files instead", name)
        from tensorflow_datasets.core import read_only_builder

        return read_only_builder.builder_from_files(name, data_dir=data_dir)


@contextlib.contextmanager
def _video_as_image_sequence() -> Iterator[None]:
    """While active, ``features.json`` entries of type ``Video`` load as the ``Sequence(Image)`` they store."""
    tfds = require_tfds()
    video_cls = tfds.features.Video
    original = video_cls.__dict__["from_json_content"]

    def from_json_content(cls: Any, value: Any) -> Any:
        if isinstance(value, dict):
            shape, dtype, encoding = tuple(value["shape"]), np.uint8, value.get("encoding_format") or "png"
        else:
            from tensorflow_datasets.core.features import feature as feature_lib

            shape = feature_lib.from_shape_proto(value.shape)
            dtype = feature_lib.dtype_from_str(value.dtype) if value.dtype else np.uint8
            encoding = value.encoding_format or None
        shape = tuple(shape) if shape else (None, None, None, 3)
        image = tfds.features.Image(shape=shape[1:], dtype=dtype, encoding_format=encoding)
        return tfds.features.Sequence(image, length=shape[0])

    video_cls.from_json_content = classmethod(from_json_content)
    try:
        yield
    finally:
        video_cls.from_json_content = original
