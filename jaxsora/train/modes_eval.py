"""Evaluating the generation modes of a trained DiT on held-out synthetic clips (``jaxsora eval-modes``).

Each mode is scored against the synthetic world's ground truth or its own input, on clips of another world seed
than training's (as ``eval-dit``):

- **image-to-video**: a held-out clip's first frame is the given image; the PSNR of the first decoded frame
  against it (the VAE's own round trip of the image is reported beside it as the ceiling).
- **forward extension**: the clip's first ``given_frames`` frames are given and ``new_frames`` generated after
  them. A case passes when the first new latent frame's frames show the objects of the last given frame (same
  colours and shapes, read by ``describe``) and every object that moves keeps moving the way it moved in the
  given part (displacement . velocity > 0). The same check on the clip's true continuation (through the VAE)
  is the ceiling, a test of the check itself.
- **loop**: a loop of ``frames - 1`` frames (its period: 16 for 17-frame clips); the seam (mean absolute
  difference between the last and the first frame) against the loop's mean frame-to-frame change; a loop
  passes when its seam is smaller.
- **text-to-image**: one-frame generations for held-out image captions, colour and shape accuracy.

Results go to ``eval_modes.json`` in the workdir and a few gifs to ``eval_modes/``.
"""

from __future__ import annotations

import json
import pathlib
import time

import numpy as np

from jaxsora.data.synthetic import describe, match, vocab
from jaxsora.data.synthetic.measure import as_uint8_video
from jaxsora.progress import progress_bar
from jaxsora.sample import parse_size
from jaxsora.train.dit_eval import (
    _accuracies,
    _by_shape,
    _training_captions,
    _write_gif,
    held_out_prompts,
    load_trained,
    read_entry,
)

DIRECTIONS = set(vocab.DIRECTIONS)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR (dB) of two images/videos, uint8 or float in [-1, 1], over the [0, 1] range."""
    a = as_uint8_video(a).astype(np.float64) / 255.0
    b = as_uint8_video(b).astype(np.float64) / 255.0
    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(1.0 / mse)


def continues(given: np.ndarray, new: np.ndarray) -> dict:
    """Does ``new`` (the first generated frames after ``given``) continue ``given``'s last frame?

    Every object present in the last given frame must be found again at the end of ``new`` with the same
    colour and shape, except one touching the frame's edge, which may leave (and whose shape, partly visible,
    is not compared), and at least one object must remain; each object that moves in ``given`` (a direction, not still/grow/shrink) and is still
    there must have moved the same way: (centroid at the end of ``new`` - centroid in the last given frame) .
    (its velocity in ``given``) > 0."""
    given, new = as_uint8_video(given), as_uint8_video(new)
    before = describe(given)
    window = describe(np.concatenate([given[-1:], new]))
    by_colour = {o.colour: o for o in window}
    objects = [o for o in before if o.present[-1]]
    passed = moving = directed = found_any = 0
    for obj in objects:
        after = by_colour.get(obj.colour)
        found = after is not None and bool(after.present[0] and after.present[-1])
        found_any += found
        at_edge = bool(obj.touches[-1])
        if not found:
            passed += at_edge  # an edge object may have left the frame
            continue
        if not at_edge and after.shape != obj.shape:
            continue
        if obj.motion in DIRECTIONS:
            moving += 1
            shift = after.centroids[-1] - after.centroids[0]
            if float(np.dot(shift, obj.velocity)) <= 0:
                continue
            directed += 1
        passed += 1
    ok = found_any > 0 and passed == len(objects)  # something must remain: a blank frame continues nothing
    return {"ok": ok, "objects": len(objects), "passed": passed, "moving": moving, "directed": directed}


def loop_seam(video: np.ndarray) -> dict:
    """The loop's seam |last - first| against its mean frame-to-frame change (pixels in [0, 1])."""
    v = as_uint8_video(video).astype(np.float64) / 255.0
    seam = float(np.mean(np.abs(v[-1] - v[0])))
    change = float(np.mean(np.abs(np.diff(v, axis=0))))
    return {"seam": seam, "mean_change": change, "ok": seam < change}


def score_image(image: np.ndarray, item: dict, details: list | None = None) -> dict:
    """Colour/shape agreement of one generated image with its caption's objects; with ``details``, what the
    caption asked and what ``describe`` read for each object is appended (None when none was matched)."""
    described = describe(image)
    truth = [o for o in item["objects"] if o.get("status") != "absent"]
    result = match(described, truth, ("colour", "shape"), single_frame=True)
    counts = {"objects": len(truth), "colour": 0, "shape": 0, "colour_and_shape": 0}
    for i, j in result.pairs:
        obj = described[j] if j is not None else None
        colour = obj is not None and obj.colour == truth[i]["colour"]
        shape = obj is not None and obj.shape == truth[i]["shape"]
        counts["colour"] += colour
        counts["shape"] += shape
        counts["colour_and_shape"] += colour and shape
        if details is not None:
            details.append(read_entry(truth[i], obj, ("colour", "shape", "size")))
    return counts


def evaluate_modes(
    workdir: str | pathlib.Path,
    *,
    num: int = 32,
    seed: int = 3_000_017,
    sizes: str = "128x128,160x96,96x160",
    frames: int = 17,
    given_frames: int = 9,
    new_frames: int = 8,
    steps: int = 30,
    guidance: float = 4.0,
    sampler: str = "euler",
    shift: float | None = None,
    modes: str = "i2v,extend,loop,t2i",
    gallery: int = 4,
    progress: bool = True,
) -> dict:
    """Scores each mode in ``modes`` on ``num`` held-out cases; returns the summary (also in eval_modes.json)."""
    chosen = [m.strip() for m in modes.split(",") if m.strip()]
    unknown = set(chosen) - {"i2v", "extend", "loop", "t2i"}
    if unknown:
        raise ValueError(f"--modes: unknown {sorted(unknown)}; choose from i2v, extend, loop, t2i")
    workdir = pathlib.Path(workdir)
    generator, params, config = load_trained(workdir)
    tf, _ = generator.factors()
    if given_frames < 1 or (given_frames - 1) % tf or new_frames < tf or new_frames % tf:
        raise ValueError(
            f"given_frames must be 1 + {tf}k and new_frames a positive multiple of {tf} "
            f"(got {given_frames}, {new_frames})"
        )
    exclude = _training_captions(config.train.latents)
    size_list = [parse_size(s) for s in sizes.split(",") if s.strip()]
    sample_kw = dict(steps=steps, guidance=guidance, sampler=sampler, shift=shift)
    out_dir = workdir / "eval_modes"
    out_dir.mkdir(parents=True, exist_ok=True)
    summary: dict = {
        "settings": {
            "num": num,
            "seed": seed,
            "sizes": sizes,
            "frames": frames,
            "given_frames": given_frames,
            "new_frames": new_frames,
            "steps": steps,
            "guidance": guidance,
            "sampler": sampler,
            "shift": shift,
        }
    }
    cases: dict[str, list] = {}
    clip_frames = max(frames, given_frames + new_frames)
    videos = held_out_prompts(num, seed=seed, sizes=size_list, frames=clip_frames, exclude=exclude)

    def per_case(name: str, case) -> tuple[list[dict], float]:
        """``case(k, item) -> (row, video)`` over the held-out clips: rows, gifs of the first few, seconds."""
        t0, rows = time.perf_counter(), []
        for k, it in enumerate(
            progress_bar(videos, desc=f"eval-modes {name}", unit="case", disable=not progress)
        ):
            row, video = case(k, it)
            rows.append({"prompt": it["prompt"], **row})
            if k < gallery:
                _write_gif(out_dir / f"{name}{k:02d}.gif", video)
        cases[name] = rows
        return rows, time.perf_counter() - t0

    def image_to_video(k, it):
        image = it["frames"][0]
        out = generator.image_to_video(
            params, [it["prompt"]], image, frames=frames, seed=seed + k, **sample_kw
        )
        ceiling = generator.decode(generator.encode(image)[None])[0, 0]
        return {"psnr": psnr(out[0, 0], image), "vae_psnr": psnr(ceiling, image)}, out[0]

    def extend(k, it):
        clip = it["frames"][: given_frames + new_frames]
        given = clip[:given_frames]
        out = generator.extend(
            params,
            [it["prompt"]],
            given,
            new_frames=new_frames,
            direction="forward",
            seed=seed + k,
            **sample_kw,
        )[0]
        first_new = slice(given_frames, given_frames + tf)  # the frames of the first new latent frame
        truth = generator.decode(generator.encode(clip)[None])[0]
        row = {**continues(given, out[first_new]), "ceiling_ok": continues(given, truth[first_new])["ok"]}
        return row, out

    def loop(k, it):
        w, h = it["size"]
        out = generator.loop(  # a loop's frames are its period: the clip without a closing frame
            params, [it["prompt"]], frames=frames - 1, height=h, width=w, seed=seed + k, **sample_kw
        )
        return loop_seam(out[0]), np.concatenate([out[0], out[0]])  # the gif plays it twice

    if "i2v" in chosen:
        rows, seconds = per_case("i2v", image_to_video)
        summary["image_to_video"] = {
            "first_frame_psnr_db": float(np.mean([r["psnr"] for r in rows])),
            "first_frame_psnr_min_db": float(np.min([r["psnr"] for r in rows])),
            "vae_round_trip_psnr_db": float(np.mean([r["vae_psnr"] for r in rows])),
            "seconds": seconds,
        }
    if "extend" in chosen:
        rows, seconds = per_case("extend", extend)
        summary["extend_forward"] = {
            "continues": float(np.mean([r["ok"] for r in rows])),
            "ceiling_true_continuation": float(np.mean([r["ceiling_ok"] for r in rows])),
            "seconds": seconds,
        }
    if "loop" in chosen:
        rows, seconds = per_case("loop", loop)
        summary["loop"] = {
            "seam_below_mean_change": float(np.mean([r["ok"] for r in rows])),
            "mean_seam": float(np.mean([r["seam"] for r in rows])),
            "mean_frame_change": float(np.mean([r["mean_change"] for r in rows])),
            "seconds": seconds,
        }

    if "t2i" in chosen:
        t0, rows, totals = time.perf_counter(), [], {}
        images = held_out_prompts(num, seed=seed + 1, sizes=size_list, frames=1, exclude=exclude, images=True)
        b = progress_bar(total=len(images), desc="eval-modes t2i", unit="case", disable=not progress)
        for size in size_list:
            group = [it for it in images if tuple(it["size"]) == size]
            if not group:
                continue
            out = generator.text_to_video(
                params,
                [it["prompt"] for it in group],
                frames=1,
                height=size[1],
                width=size[0],
                seed=seed,
                **sample_kw,
            )
            for it, image in zip(group, out, strict=True):
                read: list[dict] = []
                counts = score_image(image[0], it, read)
                for key, value in counts.items():
                    totals[key] = totals.get(key, 0) + int(value)
                rows.append({"prompt": it["prompt"], "size": list(size), **counts, "read": read})
            b.update(len(group))
        b.close()
        cases["t2i"] = rows
        acc = _accuracies(totals)
        summary["text_to_image"] = {
            "images": len(rows),
            "objects": totals.get("objects", 0),
            "colour_accuracy": acc["colour_accuracy"],
            "shape_accuracy": acc["shape_accuracy"],
            "colour_and_shape_accuracy": acc["colour_and_shape_accuracy"],
            "shape_accuracy_by_shape": _by_shape([o for row in rows for o in row["read"]]),
            "seconds": time.perf_counter() - t0,
        }

    (workdir / "eval_modes.json").write_text(json.dumps({"summary": summary, "cases": cases}, indent=2))
    return summary
