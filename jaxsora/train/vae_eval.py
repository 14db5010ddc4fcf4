"""Evaluating a trained VAE: reconstruction PSNR/SSIM on held-out clips, and encode/decode throughput.

``jaxsora eval-vae --workdir runs/vae [--num 256] [--throughput]``. Held-out clips come from the synthetic
world with a seed the training never used (``--seed``), through the run's own clip pipeline (its sizes and
frame counts), in order, without random crops.
"""

from __future__ import annotations

import collections
import copy
import json
import pathlib
import statistics
import time

import grain
import jax
import jax.numpy as jnp
import numpy as np

from jaxsora.data.buckets import full_batch_size, pad_to_full_batch
from jaxsora.data.pipeline import clip_dataset, make_source
from jaxsora.data.pixels import to_signed_unit
from jaxsora.models.vae_codec import VideoCodec
from jaxsora.progress import progress_bar
from jaxsora.train import metrics as metrics_lib


def heldout_config(config, seed: int, native_aspect: bool = True):
    config = copy.deepcopy(config)
    config.unlock() if hasattr(config, "unlock") else None
    config.data.shuffle = False
    config.data.random_crop = False
    if native_aspect:
        config.data.crop = "none"  # native aspect ratios, whatever the training crop was
    if config.data.source == "synthetic":
        config.data.synthetic.seed = seed
    return config


def evaluate(codec: VideoCodec, config, *, num_clips: int, seed: int, native_aspect: bool = True) -> dict:
    """Per-clip PSNR and SSIM of decode(encode(x)) (latent means) over the first ``num_clips`` held-out clips.

    Clips are grouped by shape and coded in batches of the size the config's bucket batcher gives that shape
    (``data.max_batch_pixels``, ``data.max_batch_size``), the last of each padded to it
    (:func:`jaxsora.data.buckets.pad_to_full_batch`): one compilation per clip shape, the same ones as
    ``jaxsora encode`` under the same data settings (the recipe's persistent compilation cache shares them)."""
    config = heldout_config(config, seed, native_aspect)
    source = make_source(config.data)
    ds = clip_dataset(source, config, shard_index=0, shard_count=1, num_epochs=1)
    it = iter(ds.to_iter_dataset(grain.ReadOptions(num_threads=max(config.data.num_threads, 1))))

    @jax.jit
    def scores(x, y):
        return metrics_lib.psnr(y, x), metrics_lib.ssim(y, x)

    rows = []
    bar = progress_bar(total=num_clips, desc="eval-vae", unit="clip")

    def code(clips: list[np.ndarray]) -> None:
        t, h, w = clips[0].shape[:3]
        x = to_signed_unit(jnp.asarray(pad_to_full_batch(np.stack(clips), config.data)))
        y = jnp.clip(codec.decode(codec.encode(x)), -1, 1)
        psnr, ssim = (np.asarray(v)[: len(clips)] for v in scores(x, y))
        rows.extend(
            {"frames": t, "height": h, "width": w, "psnr": float(p), "ssim": float(q)}
            for p, q in zip(psnr, ssim, strict=True)
        )
        bar.update(len(clips))

    pending: dict[tuple[int, ...], list[np.ndarray]] = collections.defaultdict(list)
    read = 0
    for element in it:
        if "skipped" in element:
            continue
        group = pending[element["video"].shape[:3]]
        group.append(element["video"])  # uint8 on the host until its batch is full
        if len(group) == full_batch_size(group[-1].shape[:3], config.data):
            code(pending.pop(element["video"].shape[:3]))
        read += 1
        if read >= num_clips:
            break
    it.close()
    for group in pending.values():
        code(group)
    bar.close()
    return summarize(rows)


def summarize(rows: list[dict]) -> dict:
    def agg(sel):
        return {
            "clips": len(sel),
            "psnr": float(np.mean([r["psnr"] for r in sel])) if sel else float("nan"),
            "ssim": float(np.mean([r["ssim"] for r in sel])) if sel else float("nan"),
        }

    groups = collections.defaultdict(list)
    for r in rows:
        groups["images" if r["frames"] == 1 else "videos"].append(r)
        groups[f"aspect {r['width'] / r['height']:.2f}"].append(r)
    return {"all": agg(rows), **{k: agg(v) for k, v in sorted(groups.items())}}


def throughput(
    codec: VideoCodec, sizes: list[tuple[int, int]], frames: int = 17, repeats: int = 10
) -> list[dict]:
    """Encode and decode frames/s at batch 1 (median of ``repeats`` after a compile/warm-up call)."""
    rows = []
    for height, width in sizes:
        x = jax.random.uniform(jax.random.key(0), (1, frames, height, width, 3), minval=-1, maxval=1)
        row = {"frames": frames, "height": height, "width": width}
        t0 = time.perf_counter()
        z = jax.block_until_ready(codec.encode(x))
        jax.block_until_ready(codec.decode(z))
        row["compile_s"] = time.perf_counter() - t0
        for name, fn, arg in (("encode", codec.encode, x), ("decode", codec.decode, z)):
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                jax.block_until_ready(fn(arg))
                times.append(time.perf_counter() - t0)
            row[f"{name}_frames_per_s"] = frames / statistics.median(times)
        rows.append(row)
    return rows


def report(result: dict, rows: list[dict] | None) -> str:
    lines = ["| clips | group | PSNR (dB) | SSIM |", "|---|---|---:|---:|"]
    for group, r in result.items():
        lines.append(f"| {r['clips']} | {group} | {r['psnr']:.2f} | {r['ssim']:.4f} |")
    if rows:
        lines += [
            "",
            "| frames x size | encode frames/s | decode frames/s | compile s |",
            "|---|---:|---:|---:|",
        ]
        for r in rows:
            lines.append(
                f"| {r['frames']} x {r['width']}x{r['height']} | {r['encode_frames_per_s']:.1f} | "
                f"{r['decode_frames_per_s']:.1f} | {r['compile_s']:.1f} |"
            )
    return "\n".join(lines)


def run_eval(
    workdir: str, *, num_clips: int, seed: int, ema: bool, sizes: list[tuple[int, int]] | None, overrides=()
) -> str:
    from jaxsora.config import apply_overrides
    from jaxsora.train.vae import load_codec

    codec, config = load_codec(workdir, ema=ema)
    apply_overrides(config, overrides)  # e.g. evaluate at another size than the training crops
    result = evaluate(codec, config, num_clips=num_clips, seed=seed)
    rows = throughput(codec, sizes) if sizes else None
    out = pathlib.Path(workdir) / "eval_vae.json"
    out.write_text(
        json.dumps({"reconstruction": result, "throughput": rows, "seed": seed, "ema": ema}, indent=2)
    )
    return report(result, rows) + f"\n(written to {out}; devices: {jax.devices()[0].device_kind})"
