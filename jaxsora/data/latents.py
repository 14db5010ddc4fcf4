"""The latent dataset: VAE latents of a source's clips in ArrayRecord files, so the diffusion transformer trains
without re-running the encoder.

Layout of a latent dataset folder::

    meta.json                      VAE config and factors, latent channel statistics, clip count, and
                                   ``complete``: false from the encode's start (the VAE and factors only,
                                   so a trainer can build and compile beside it), true once it has ended
    latents-p000-00000.array_record  records of process 0, part 0 (``part_size`` clips a part)
    progress-p000.json             parts finished, the statistics of their clips and the data iterator's
                                   state (resume after interruption; a trainer may start on those parts)

Each record is a msgpack dict: ``mean`` and ``std`` (float32 ``[t, h, w, C]``), ``caption``,
``short_caption``, ``tokens``/``mask`` (the byte tokens at encode time), ``source_id``, ``fps`` and the pixel
geometry ``frames``/``height``/``width``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import time
from typing import Any

import grain
import numpy as np
from flax import serialization

RECORD_KEYS = (
    "mean",
    "std",
    "caption",
    "short_caption",
    "tokens",
    "mask",
    "source_id",
    "fps",
    "frames",
    "height",
    "width",
)


def serialize(record: dict[str, Any]) -> bytes:
    missing = set(RECORD_KEYS) - set(record)
    if missing:
        raise ValueError(f"latent record lacks {sorted(missing)}")
    return serialization.msgpack_serialize(record)


def deserialize(data: bytes) -> dict[str, Any]:
    return serialization.msgpack_restore(data)


def part_path(folder: pathlib.Path, process: int, part: int) -> pathlib.Path:
    return folder / f"latents-p{process:03d}-{part:05d}.array_record"


class PartWriter:
    """Writes one part file; it becomes visible under its final name only when closed complete."""

    def __init__(self, path: pathlib.Path):
        from array_record.python.array_record_module import ArrayRecordWriter

        self.path = path
        self._tmp = path.with_suffix(".array_record.tmp")
        self._writer = ArrayRecordWriter(str(self._tmp), "group_size:1")
        self.count = 0

    def write(self, record: dict[str, Any]) -> None:
        self._writer.write(serialize(record))
        self.count += 1

    def close(self) -> None:
        self._writer.close()
        self._tmp.replace(self.path)


def write_json(path: pathlib.Path, value: dict, indent: int | None = None) -> None:
    """Writes ``path`` whole: a reader sees the old file or the new one, never a part."""
    path = pathlib.Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(value, indent=indent))
    tmp.replace(path)


def write_meta(folder: pathlib.Path, meta: dict) -> None:
    write_json(pathlib.Path(folder) / "meta.json", meta, indent=2)


def progress_path(folder: pathlib.Path, process: int) -> pathlib.Path:
    return pathlib.Path(folder) / f"progress-p{process:03d}.json"


def is_complete(meta: dict) -> bool:
    """Whether the encode that wrote ``meta`` has ended (datasets from before the flag are complete)."""
    return bool(meta.get("complete", True))


def read_meta(folder: str | pathlib.Path, *, allow_incomplete: bool = False) -> dict:
    """``folder/meta.json``; a dataset still being encoded (or whose encode was interrupted) is an error unless
    ``allow_incomplete``."""
    path = pathlib.Path(folder) / "meta.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: make a latent dataset with `jaxsora encode`")
    meta = json.loads(path.read_text())
    if not allow_incomplete and not is_complete(meta):
        raise ValueError(
            f"the latent dataset {folder} is incomplete: its encode is still running or was interrupted "
            "(run the same `jaxsora encode` again to finish it)"
        )
    return meta


def wait_for_meta(folder: str | pathlib.Path, timeout_s: float, *, poll_s: float = 0.5) -> dict:
    """``folder/meta.json`` once it exists (the encode has started: its VAE and latent channels), polling every
    ``poll_s`` seconds for at most ``timeout_s`` (:func:`finished_view` says what of it is finished)."""
    path = pathlib.Path(folder) / "meta.json"
    deadline = time.monotonic() + timeout_s
    while not path.is_file():
        if time.monotonic() > deadline:
            raise TimeoutError(f"the latent dataset {folder} was not started after waiting {timeout_s:.0f} s")
        time.sleep(poll_s)
    return json.loads(path.read_text())


@dataclasses.dataclass(frozen=True)
class LatentView:
    """Which part files of a latent dataset a trainer reads, with the channel statistics of their clips: the
    whole dataset (``complete``), or the parts an encode still running has finished so far."""

    files: tuple[str, ...]  # part file names, in the folder
    clips: int
    latent_mean: tuple[float, ...]
    latent_std: tuple[float, ...]
    complete: bool

    def record(self) -> dict:
        """A JSON value (saved with a checkpoint, so a resumed run reads the same clips)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_record(cls, record: dict) -> LatentView:
        return cls(
            tuple(record["files"]),
            int(record["clips"]),
            tuple(record["latent_mean"]),
            tuple(record["latent_std"]),
            bool(record["complete"]),
        )

    def stats(self) -> dict:
        return {"latent_mean": list(self.latent_mean), "latent_std": list(self.latent_std)}


def part_files(folder: pathlib.Path) -> list[str]:
    return sorted(p.name for p in pathlib.Path(folder).glob("latents-p*-*.array_record"))


def finished_view(folder: str | pathlib.Path) -> LatentView | None:
    """The dataset as it stands: all of it once its encode has ended, else the parts finished so far (each
    process's ``progress-p*.json``: its first ``parts`` part files and their clips' statistics, written when a
    part closes), or None when no part is finished yet (or the encode's progress files predate statistics)."""
    folder = pathlib.Path(folder)
    meta = read_meta(folder, allow_incomplete=True)
    if is_complete(meta):
        files = part_files(folder)
        if not files:
            raise ValueError(f"latent dataset {folder} has no record files")
        return LatentView(
            tuple(files),
            int(meta.get("clips", 0)),
            tuple(meta["latent_mean"]),
            tuple(meta["latent_std"]),
            complete=True,
        )
    channels = int(meta["latent_channels"])
    stats, files, clips = ChannelStats(channels), [], 0
    for path in sorted(folder.glob("progress-p*.json")):
        try:
            done = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):  # an encode from before its progress was written whole
            return None
        if done.get("parts", 0) == 0:
            continue
        if "stats" not in done:
            return None
        process = int(path.stem.removeprefix("progress-p"))
        files += [part_path(folder, process, k).name for k in range(done["parts"])]
        stats.merge(ChannelStats(channels, done["stats"]))
        clips += int(done["clips"])
    if not files:
        return None
    return LatentView(
        tuple(files), clips, tuple(stats.mean.tolist()), tuple(stats.std.tolist()), complete=False
    )


class LatentDataset:
    """Random access to the records of a latent dataset folder (all processes' parts, or the part files
    ``files`` names: a :class:`LatentView`'s, which may be of an encode still running), for Grain."""

    def __init__(self, folder: str | pathlib.Path, files: tuple[str, ...] | None = None):
        self.folder = pathlib.Path(folder)
        self.files = None if files is None else tuple(files)
        self.meta = read_meta(self.folder, allow_incomplete=files is not None)
        if files is None:
            files = part_files(self.folder)
        if not files:
            raise ValueError(f"latent dataset {self.folder} has no record files")
        missing = [f for f in files if not (self.folder / f).is_file()]
        if missing:
            raise FileNotFoundError(f"latent dataset {self.folder} lacks {missing[:3]}")
        self._source = grain.sources.ArrayRecordDataSource([str(self.folder / f) for f in files])

    def __len__(self) -> int:
        return len(self._source)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return deserialize(self._source[index])

    def __getstate__(self):  # re-open the files in worker processes
        return {"folder": self.folder, "files": self.files}

    def __setstate__(self, state):
        self.__init__(state["folder"], state.get("files"))


class ChannelStats:
    """Running per-channel mean and variance of latent means (Chan's parallel update), for normalisation."""

    def __init__(self, channels: int, state: dict | None = None):
        self.n = 0.0
        self.mean = np.zeros(channels)
        self.m2 = np.zeros(channels)
        if state:
            self.n, self.mean, self.m2 = state["n"], np.asarray(state["mean"]), np.asarray(state["m2"])

    def update(self, x: np.ndarray) -> None:
        x = np.asarray(x, np.float64).reshape(-1, x.shape[-1])
        mean = x.mean(0)
        self.merge(ChannelStats(x.shape[-1], {"n": len(x), "mean": mean, "m2": ((x - mean) ** 2).sum(0)}))

    def merge(self, other: ChannelStats) -> None:
        """Adds the clips ``other`` has seen (Chan's update of two partial results: another process's shard)."""
        if other.n == 0:
            return
        delta, total = other.mean - self.mean, self.n + other.n
        self.mean = self.mean + delta * other.n / total
        self.m2 = self.m2 + other.m2 + delta**2 * self.n * other.n / total
        self.n = total

    @property
    def std(self) -> np.ndarray:
        return np.sqrt(self.m2 / max(self.n - 1, 1))

    def state(self) -> dict:
        return {"n": self.n, "mean": self.mean.tolist(), "m2": self.m2.tolist()}
