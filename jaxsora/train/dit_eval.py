"""Evaluating a trained DiT on the synthetic world: does each generated video show what its prompt says?

``jaxsora eval-dit --workdir runs/dit --num 64``: prompts are the descriptive captions of held-out synthetic
clips (another world seed than training's; any caption seen verbatim in the training latents is skipped),
rendered at the evaluation sizes so each prompt comes with its ground truth. Each prompt's video is generated
(EMA weights, Euler or Heun + guidance), decoded with the VAE, read back by the world's analytic ``describe``,
and matched object by object: colour, shape (for every object the prompt names) and motion direction (for
objects that move); shape accuracy is also given per asked shape. A sample gallery (gifs), a contact sheet of
every sample's middle frame labelled with what was asked and read (``eval_dit/sheet.png``,
:mod:`jaxsora.train.eval_sheet`) and ``eval_dit.json`` are written to the workdir.
"""

from __future__ import annotations

import json
import pathlib
import time
from typing import Any

import flax.linen as nn
import jax
import numpy as np

from jaxsora.data.latents import LatentView
from jaxsora.data.synthetic import SyntheticWorld, vocab
from jaxsora.data.synthetic.measure import as_uint8_video
from jaxsora.progress import progress_bar
from jaxsora.sample import Generator, parse_size
from jaxsora.train.checkpoint import Checkpointer, load_run_config
from jaxsora.train.dit import DiTParts, read_latent_meta
from jaxsora.train.eval_sheet import write_contact_sheet
from jaxsora.train.prompt_scoring import DIRECTIONS, READ_ATTRIBUTES, ScorePool, read_entry, score

__all__ = [
    "DIRECTIONS",
    "READ_ATTRIBUTES",
    "evaluate",
    "held_out_prompts",
    "load_trained",
    "read_entry",
    "score",
]

SIZE_ORDER = {size: i for i, size in enumerate(vocab.SIZE_CLASSES)}


def load_trained(
    workdir: str | pathlib.Path,
    *,
    ema: bool = True,
    step: int | None = None,
    with_vae: bool = True,
    mesh: jax.sharding.Mesh | None = None,
):
    """(Generator, params, config) of a ``jaxsora train`` workdir (EMA weights by default); with a ``mesh``
    of several devices the Generator samples sharded over it."""
    config = load_run_config(workdir)
    ckpt = Checkpointer(pathlib.Path(workdir) / "checkpoints", save_every=1, keep=1000)
    step = ckpt.latest_step() if step is None else step
    # the latent statistics the weights were trained with: those of the clips the checkpoint's data read (the
    # whole dataset, or an encode's first parts), saved with it; the dataset's for checkpoints without them
    view = None if step is None else ckpt.saved_data_view(step)
    meta = read_latent_meta(config.train.latents, allow_incomplete=view is not None)
    if view is not None:
        meta = meta | LatentView.from_record(view).stats()
    parts = DiTParts(config, meta)
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    abstract = nn.meta.unbox(jax.eval_shape(parts.init, jax.random.key(0)))
    abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=device), abstract)
    try:
        state = ckpt.restore(abstract, step=step)
    except ValueError as e:  # orbax lists every mismatching leaf: one line is enough here
        raise ValueError(
            f"the checkpoint in {workdir} does not fit the model its config.json builds (trained with another "
            f"version of the code?): {str(e).splitlines()[0][:200]}"
        ) from None
    finally:
        ckpt.close()
    codec = None
    if with_vae:
        from jaxsora.train.vae import load_codec

        vae = config.train.vae or meta.get("vae_workdir", "")
        if not vae:
            raise ValueError("no VAE to decode with: pass --config.train.vae=<train-vae workdir>")
        codec, _ = load_codec(vae)
    return Generator(parts, codec, mesh), (state.ema_params if ema else state.params), config


def held_out_prompts(
    num: int,
    *,
    seed: int,
    sizes: list[tuple[int, int]],
    frames: int,
    exclude: set[str] = frozenset(),
    images: bool = False,
) -> list[dict]:
    """``num`` prompts (descriptive captions of held-out synthetic clips, or of images with ``images``) with
    their ground-truth objects."""
    world = SyntheticWorld(
        num_clips=100 * num,
        seed=seed,
        image_fraction=1.0 if images else 0.0,
        min_frames=max(frames, 2),
    )
    out = []
    index = 0
    while len(out) < num:
        width, height = sizes[len(out) % len(sizes)]
        clip = world.load(index, list(range(frames)), height, width)
        index += 1
        if clip.caption in exclude or all(o["status"] == "absent" for o in clip.meta["objects"]):
            continue  # seen in training, or nothing visible to score
        out.append(
            {
                "prompt": clip.caption,
                "objects": clip.meta["objects"],
                "fps": clip.meta["fps"],
                "size": (width, height),
                "source_id": clip.source_id,
                "frames": clip.frames,
            }
        )
    return out


def evaluate(
    workdir: str | pathlib.Path,
    *,
    num: int = 64,
    seed: int = 2_000_003,
    sizes: str = "128x128,160x96,96x160",
    frames: int = 17,
    steps: int = 30,
    guidance: float = 4.0,
    sampler: str = "euler",
    shift: float | None = None,
    batch: int = 32,
    gallery: int = 8,
    vae_ceiling: bool = True,
    score_workers: int | None = None,
    progress: bool = True,
) -> dict:
    """Generates a video for each of ``num`` held-out prompts and scores it (see the module docstring);
    ``score_workers`` processes run ``describe`` beside the generation (default: up to 8, none on <= 2 cores;
    0: in this process). Writes ``eval_dit.json``, the gallery and the contact sheet; returns the summary."""
    workdir = pathlib.Path(workdir)
    with ScorePool(score_workers) as pool:  # its processes start while the model loads
        generator, params, config = load_trained(workdir)
        exclude = _training_captions(config.train.latents)
        size_list = [parse_size(s) for s in sizes.split(",") if s.strip()]
        items = held_out_prompts(num, seed=seed, sizes=size_list, frames=frames, exclude=exclude)
        out_dir = workdir / "eval_dit"
        out_dir.mkdir(parents=True, exist_ok=True)
        bar = progress_bar(total=len(items), desc="eval-dit", unit="video", disable=not progress)
        t_generate = 0.0
        middle_frames: list[np.ndarray] = []
        jobs = []  # (item, size, the sample's scoring, the round trip's scoring or None), in prompt order
        for size in size_list:
            group = [it for it in items if tuple(it["size"]) == size]
            for start in range(0, len(group), batch):
                chunk = group[start : start + batch]
                t0 = time.perf_counter()
                videos = generator.text_to_video(
                    params,
                    [it["prompt"] for it in chunk],
                    frames=frames,
                    height=size[1],
                    width=size[0],
                    seed=seed + start,
                    steps=steps,
                    guidance=guidance,
                    sampler=sampler,
                    shift=shift,
                )
                recon = [None] * len(chunk)
                if vae_ceiling:  # the same scoring on the prompts' true clips after a VAE round trip
                    real = np.stack([it["frames"] for it in chunk]).astype(np.float32) / 127.5 - 1.0
                    recon = np.asarray(generator.decode(generator.codec.encode(jax.numpy.asarray(real))))
                t_generate += time.perf_counter() - t0
                for it, video, round_trip in zip(chunk, videos, recon, strict=True):
                    objects = it["objects"]
                    ceiling_job = None if round_trip is None else pool.submit(round_trip, objects)
                    jobs.append((it, size, pool.submit(video, objects), ceiling_job))
                    middle_frames.append(as_uint8_video(video[len(video) // 2])[0])  # that frame alone
                    if len(jobs) <= gallery:
                        _write_gif(out_dir / f"sample{len(jobs) - 1:02d}.gif", video)
                bar.update(len(chunk))
        t0 = time.perf_counter()
        totals: dict[str, int] = {}
        ceiling: dict[str, int] = {}
        ceiling_read: list[dict] = []
        per_item = []
        for it, size, sample_job, ceiling_job in jobs:
            counts, reads = sample_job.result()
            for k, v in counts.items():
                totals[k] = totals.get(k, 0) + int(v)
            per_item.append({"prompt": it["prompt"], "size": list(size), **counts, "read": reads})
            if ceiling_job is not None:
                counts, reads = ceiling_job.result()
                for k, v in counts.items():
                    ceiling[k] = ceiling.get(k, 0) + int(v)
                ceiling_read += reads
                # What describe read on the round trip, beside the sample's reads (no per-frame evidence).
                per_item[-1]["vae_read"] = [
                    {"asked": o["asked"], "got": o["got"] and {k: o["got"][k] for k in READ_ATTRIBUTES}}
                    for o in reads
                ]
        t_score = time.perf_counter() - t0  # scoring left after the last generation (the rest ran beside it)
        bar.close()
        if per_item:
            write_contact_sheet(out_dir / "sheet.png", middle_frames, [it["read"] for it in per_item])
        summary = {
            "videos": len(per_item),
            "moving_objects_read_as": _motion_outcomes(per_item),
            "objects": totals.get("objects", 0),
            "moving_objects": totals.get("moving", 0),
            **_accuracies(totals),
            "vae_ceiling": _accuracies(ceiling) if ceiling else None,
            "shape_accuracy_by_shape": _by_shape([o for it in per_item for o in it["read"]]),
            "vae_ceiling_shape_accuracy_by_shape": _by_shape(ceiling_read) if ceiling_read else None,
            "shape_misses_read_as": _shape_misses(o for it in per_item for o in it["read"]),
            "vae_ceiling_shape_misses_read_as": _shape_misses(ceiling_read) if ceiling_read else None,
            "shape_accuracy_by_shape_and_size": _by_shape(
                [o for it in per_item for o in it["read"]], by_size=True
            ),
            "vae_ceiling_shape_accuracy_by_shape_and_size": (
                _by_shape(ceiling_read, by_size=True) if ceiling_read else None
            ),
            "shape_accuracy_by_status": _by_status([o for it in per_item for o in it["read"]]),
            "vae_ceiling_shape_accuracy_by_status": _by_status(ceiling_read) if ceiling_read else None,
            "generate_seconds": t_generate,
            "score_seconds": t_score,
            "score_workers": pool.workers,
            "settings": {
                "seed": seed,
                "sizes": sizes,
                "frames": frames,
                "steps": steps,
                "guidance": guidance,
                "sampler": sampler,
                "shift": shift,
            },
        }
        (workdir / "eval_dit.json").write_text(json.dumps({"summary": summary, "videos": per_item}, indent=2))
        return summary


def _motion_outcomes(per_item: list[dict]) -> dict[str, int]:
    """What ``describe`` read for the prompt objects that move in a direction: the asked direction, another
    direction, still, growing/shrinking, or no object matched."""
    out = {"asked direction": 0, "other direction": 0, "still": 0, "grow or shrink": 0, "not found": 0}
    for item in per_item:
        for obj in item.get("read", []):
            if obj["asked"]["motion"] not in DIRECTIONS:
                continue
            got = obj["got"]["motion"] if obj["got"] else None
            if got is None:
                out["not found"] += 1
            elif got == obj["asked"]["motion"]:
                out["asked direction"] += 1
            elif got in DIRECTIONS:
                out["other direction"] += 1
            else:
                out["still" if got == "still" else "grow or shrink"] += 1
    return out


def _shape_misses(read) -> dict[str, int]:
    """How the prompt objects whose shape was misread were read: ``{"square": 11, "circle": 8, "none": 1}``."""
    counts: dict[str, int] = {}
    for obj in read:
        got = obj["got"]["shape"] if obj["got"] else "none"
        if got != obj["asked"]["shape"]:
            counts[got] = counts.get(got, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def _by_shape(read: list[dict], by_size: bool = False) -> dict[str, Any]:
    """Per asked shape: how many of its objects ``describe`` read as that shape, as "right / asked"; with
    ``by_size``, per asked shape and then per asked size (small, medium, large)."""
    counts = _shape_reads_by(read, lambda asked: (asked["shape"], asked["size"] if by_size else ""))
    if not by_size:
        return {shape: f"{r} / {n}" for (shape, _), (r, n) in sorted(counts.items())}
    out: dict[str, dict[str, str]] = {}
    for (shape, size), (r, n) in sorted(counts.items(), key=lambda kv: (kv[0][0], SIZE_ORDER[kv[0][1]])):
        out.setdefault(shape, {})[size] = f"{r} / {n}"
    return out


def _by_status(read: list[dict]) -> dict[str, str]:
    """Shape read right per the asked object's visibility in the clip (``stays``, ``enters``, ``leaves``,
    ``crosses``, ``partial``: never wholly in the frame), as "right / asked"."""
    counts = _shape_reads_by(read, lambda asked: asked.get("status") or "?")
    return {status: f"{r} / {n}" for status, (r, n) in sorted(counts.items())}


def _shape_reads_by(read: list[dict], key) -> dict[Any, list[int]]:
    """``key(asked)`` -> [shapes read right, prompt objects] over ``read`` entries."""
    counts: dict[Any, list[int]] = {}
    for obj in read:
        c = counts.setdefault(key(obj["asked"]), [0, 0])
        c[0] += obj["got"] is not None and obj["got"]["shape"] == obj["asked"]["shape"]
        c[1] += 1
    return counts


def _accuracies(totals: dict[str, int]) -> dict[str, float]:
    objects, moving = max(totals.get("objects", 0), 1), max(totals.get("moving", 0), 1)
    return {
        "colour_accuracy": totals.get("colour", 0) / objects,
        "shape_accuracy": totals.get("shape", 0) / objects,
        "colour_and_shape_accuracy": totals.get("colour_and_shape", 0) / objects,
        "motion_accuracy": totals.get("motion", 0) / moving,
    }


def _training_captions(latents: str) -> set[str]:
    from jaxsora.data.latents import LatentDataset

    try:
        ds = LatentDataset(latents)
    except (FileNotFoundError, ValueError):
        return set()
    return {str(ds[i]["caption"]) for i in range(len(ds))}


def _write_gif(path: pathlib.Path, video: np.ndarray) -> None:
    from PIL import Image

    frames = [Image.fromarray(f) for f in as_uint8_video(video)]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=125, loop=0)
