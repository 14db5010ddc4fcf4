"""A folder of videos and images, with captions, as a :class:`~jaxsora.data.source.ClipSource`.

Files: every file under ``root`` (recursively by default) whose extension is one of ``extensions``
(videos: mp4 m4v webm mov mkv avi gif; images: png jpg jpeg webp bmp), in sorted order of their paths
relative to ``root``, so the index of a clip is the same on every host. Hidden files and folders (a name
starting with ``.``, such as macOS's ``._clip.mp4``) are skipped.

Captions, first match wins:

1. ``captions.jsonl`` (at ``root`` unless ``captions`` names another file): one JSON object a line,
   ``{"path": "a/b.mp4", "caption": "..."}``, with an optional ``"short_caption"``. A relative ``path``
   is relative to ``root``; an absolute one must lie under ``root``. Lines naming files that were not
   found are counted in :attr:`FolderSource.num_orphan_captions`.
2. A sidecar text file next to the clip: ``clip.txt`` or ``clip.mp4.txt`` (read when the clip is used).
3. Otherwise the caption is ``""``; such files are counted in :attr:`FolderSource.num_uncaptioned`, or
   left out when ``require_captions=True``.

Unreadable files (corrupt, truncated, empty, not media at all, deleted since the scan) make ``info`` and
``load`` raise :class:`~jaxsora.data.source.UnreadableClipError` and nothing else; the pipeline skips and
counts them. The source is picklable (Grain sends it to worker processes); each process keeps its own
small cache of probed geometry.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Sequence

import numpy as np

from jaxsora.data import video_io
from jaxsora.data.source import ClipInfo, InfoCache, LoadedClip, UnreadableClipError

DEFAULT_EXTENSIONS = tuple(sorted(video_io.VIDEO_EXTENSIONS | video_io.IMAGE_EXTENSIONS))
CAPTIONS_FILE = "captions.jsonl"

log = logging.getLogger(__name__)


class FolderSource:
    """Videos and images under ``root``, captioned by ``captions.jsonl`` or sidecar ``.txt`` files.

    Args:
        root: the folder to scan.
        captions: a JSONL captions file; default ``root/captions.jsonl`` when it exists.
        recursive: scan sub-folders too.
        extensions: file extensions to take (case-insensitive, with or without the dot).
        require_captions: leave out files with neither a JSONL entry nor a sidecar ``.txt``.
        cache_size: how many probed clips each process remembers.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        captions: str | os.PathLike | None = None,
        recursive: bool = True,
        extensions: Iterable[str] = DEFAULT_EXTENSIONS,
        require_captions: bool = False,
        cache_size: int = 65536,
    ):
        self.root = os.path.abspath(os.fspath(root))
        if not os.path.isdir(self.root):
            raise FileNotFoundError(f"FolderSource: {self.root} is not a folder")
        self.extensions = tuple(sorted({_normalize_extension(e) for e in extensions}))
        if not self.extensions:
            raise ValueError("FolderSource: extensions is empty")
        self.recursive = recursive
        self.cache_size = cache_size

        found, sidecars = self._scan()
        if captions is None:
            default = os.path.join(self.root, CAPTIONS_FILE)
            captions = default if os.path.isfile(default) else None
        self.captions_path = os.path.abspath(os.fspath(captions)) if captions is not None else None
        table = _read_captions_jsonl(self.captions_path, self.root) if self.captions_path else {}
        found_set = set(found)
        self.num_orphan_captions = sum(1 for rel in table if rel not in found_set)
        if self.num_orphan_captions:
            log.warning(
                "%s: %d captions name files that are not in %s",
                self.captions_path,
                self.num_orphan_captions,
                self.root,
            )

        files: list[str] = []
        sidecar_of: list[str | None] = []
        uncaptioned = 0
        for rel in found:
            sidecar = None if rel in table else _find_sidecar(rel, sidecars)
            if rel not in table and sidecar is None:
                uncaptioned += 1
                if require_captions:
                    continue
            files.append(rel)
            sidecar_of.append(sidecar)
        self.num_uncaptioned = uncaptioned  # files without a caption (left out if require_captions)
        self.require_captions = require_captions
        if not files:
            what = "captioned " if require_captions and found else ""
            raise ValueError(
                f"FolderSource: no {what}videos or images under {self.root} "
                f"({'recursive' if recursive else 'top level only'}; extensions {', '.join(self.extensions)})"
            )
        self.files = files
        self._sidecars = sidecar_of
        self._captions = {rel: table[rel] for rel in files if rel in table}
        self._infos = InfoCache(cache_size)

    # ----------------------------------------------------------------------------------------- scan

    def _scan(self) -> tuple[list[str], set[str]]:
        """Media files and ``.txt`` files under root, as sorted POSIX paths relative to root."""
        media, texts = [], set()
        visited: set[str] = set()
        for dirpath, dirnames, filenames in os.walk(self.root, followlinks=True):
            real = os.path.realpath(dirpath)
            if real in visited:  # a symlink cycle, or a folder linked twice
                dirnames[:] = []
                continue
            visited.add(real)
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")) if self.recursive else []
            rel_dir = os.path.relpath(dirpath, self.root)
            for name in filenames:
                if name.startswith("."):
                    continue
                rel = name if rel_dir == "." else f"{rel_dir}/{name}"
                rel = rel.replace(os.sep, "/")
                ext = os.path.splitext(name)[1].lower()
                if ext in self.extensions:
                    media.append(rel)
                elif ext == ".txt":
                    texts.add(rel)
        return sorted(media), texts

    # ----------------------------------------------------------------------------------------- ClipSource

    def __len__(self) -> int:
        return len(self.files)

    def __repr__(self) -> str:
        return (
            f"FolderSource({self.root!r}, {len(self)} files, {self.num_uncaptioned} uncaptioned"
            f"{' (left out)' if self.require_captions else ''})"
        )

    def path(self, index: int) -> str:
        """The absolute path of clip ``index``."""
        return os.path.join(self.root, *self.files[self._check_index(index)].split("/"))

    def info(self, index: int) -> ClipInfo:
        index = self._check_index(index)
        cached = self._infos.get(index)
        if cached is not None:
            return cached
        path = self.path(index)
        num_frames, height, width, fps = video_io.probe(path)
        caption, _ = self._caption(index)
        return self._infos.put(
            index, ClipInfo(num_frames, height, width, fps, caption=caption, source_id=path)
        )

    def load(
        self,
        index: int,
        frame_indices: Sequence[int],
        height: int,
        width: int,
        rng: np.random.Generator | None = None,
    ) -> LoadedClip:
        index = self._check_index(index)
        path = self.path(index)
        frames = video_io.read_frames(path, frame_indices, height, width)
        caption, short_caption = self._caption(index)
        return LoadedClip(
            frames, caption=caption, short_caption=short_caption, meta={"path": path}, source_id=path
        )

    # ----------------------------------------------------------------------------------------- helpers

    def _check_index(self, index: int) -> int:
        index = int(index)
        if not 0 <= index < len(self.files):
            raise IndexError(f"clip index {index} outside [0, {len(self.files)})")
        return index

    def _caption(self, index: int) -> tuple[str, str]:
        """(caption, short_caption) of clip ``index``."""
        rel = self.files[index]
        entry = self._captions.get(rel)
        if entry is not None:
            return entry
        sidecar = self._sidecars[index]
        if sidecar is None:
            return "", ""
        path = os.path.join(self.root, *sidecar.split("/"))
        try:
            with open(path, "rb") as f:
                text = f.read().decode("utf-8", errors="replace")
        except OSError as e:
            raise UnreadableClipError(self.path(index), f"cannot read caption file {path}: {e}") from e
        return text.strip(), ""


def _normalize_extension(ext: str) -> str:
    ext = ext.strip().lower()
    return ext if ext.startswith(".") else f".{ext}"


def _find_sidecar(rel: str, texts: set[str]) -> str | None:
    for candidate in (os.path.splitext(rel)[0] + ".txt", rel + ".txt"):
        if candidate in texts:
            return candidate
    return None


def _read_captions_jsonl(path: str, root: str) -> dict[str, tuple[str, str]]:
    """{path relative to root: (caption, short_caption)} from a JSONL file (later lines win)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"captions file {path} not found")
    table: dict[str, tuple[str, str]] = {}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                entry = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{number}: not JSON ({e})") from e
            if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
                raise ValueError(f'{path}:{number}: expected {{"path": "...", "caption": "..."}}')
            caption = entry.get("caption", "")
            short = entry.get("short_caption", "")
            if not isinstance(caption, str) or not isinstance(short, str):
                raise ValueError(f"{path}:{number}: caption and short_caption must be strings")
            file_path = entry["path"]
            if os.path.isabs(file_path):
                file_path = os.path.relpath(file_path, root)
            rel = os.path.normpath(file_path).replace(os.sep, "/")
            if rel.startswith("../") or rel == "..":
                rel = "\0outside:" + entry["path"]  # never matches a scanned file: counted as an orphan
            table[rel] = (caption.strip(), short.strip())
    return table
