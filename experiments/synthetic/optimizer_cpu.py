"""AdamW against Muon (``train.optim.kind``) for the DiT, on the CPU: held-out loss after the same steps.

A scaled-down configs/small.py DiT (width 128, 4 blocks, packs of 512 tokens, 4 a batch, float32) trains on a
latent dataset's first parts; the loss on its last part (clips never trained on) is measured at fixed noise,
timesteps and caption drops every ``--every`` steps, for the weights and their EMA. Each arm is a kind and a
peak learning rate, run from the same initialisation and data order for each seed, so the arms differ only by
the optimizer.

    jaxsora encode --vae VAE --config configs/small.py --out LATENTS --max-clips 3000 --part-size 1000 \\
        --config.data.max_pixels=4096
    python experiments/synthetic/optimizer_cpu.py --latents LATENTS --arms adamw:1e-3,muon:1e-3 --seeds 0,1 \\
        [--steps 1000] [--every 250] [--config.dit.width=192 ...]

Prints one markdown row per arm and seed (held-out loss at each checkpoint, weights / EMA) and a mean row per
arm; ``--json`` also writes them. The loss is a proxy for sample quality, not the recipe's figure: on the GPU
a learning rate of 2e-3 gave a lower loss and worse samples than 1e-3 (experiments/synthetic/NOTES.md DiT
item 6).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import shutil
import sys
import tempfile
import time

import jax
import numpy as np

from jaxsora import parallel
from jaxsora.config import load_config, split_override_args
from jaxsora.data.latents import LatentDataset
from jaxsora.data.packing import packed_dataset
from jaxsora.train import dit as dit_train

SCALED_DOWN = [
    "packing.seq_len=512",
    "packing.batch_size=4",
    "packing.num_workers=0",
    "data.num_workers=0",
    "dit.width=128",
    "dit.depth=4",
    "dit.num_heads=2",
    "dit.head_dim=64",
    "dit.mlp_dim=512",
    "dit.dtype=float32",
    "dit.attention=xla",
    "text_encoder.width=128",
    "text_encoder.num_heads=2",
    "text_encoder.mlp_dim=512",
    "text_encoder.dtype=float32",
    "text_encoder.attention=xla",
    "train.schedule=steps",
    "train.time_limit_s=0",
    "train.optim.warmup_steps=100",
]


def split_dataset(latents: pathlib.Path, workdir: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    """Two dataset folders beside each other: every part but the last to train on, the last held out."""
    parts = sorted(latents.glob("latents-p*-*.array_record"))
    if len(parts) < 2:
        raise SystemExit(f"{latents} has {len(parts)} part files: encode with a smaller --part-size")
    folders = (workdir / "train", workdir / "held_out")
    for folder, files in zip(folders, (parts[:-1], parts[-1:]), strict=True):
        folder.mkdir(parents=True)
        shutil.copy(latents / "meta.json", folder / "meta.json")
        for f in files:
            (folder / f.name).symlink_to(f.resolve())
    return folders


def run_arm(config, train_dir, held_out, *, steps: int, every: int, batches: int) -> dict:
    trainer = dit_train.DiTTrainer(config, tempfile.mkdtemp(prefix="optimizer_cpu_"))
    parts = trainer.parts
    state = trainer.init_state()
    step_fn = trainer.step_fn()
    loss_fn = jax.jit(lambda params, batch, rng: parts.loss(params, batch, rng)[0])
    tokenize = parts.text.caption_tokenizer()
    held = packed_dataset(LatentDataset(held_out), config, tokenize=tokenize, num_epochs=1)
    with parallel.mesh_context(trainer.mesh):
        eval_batches = [trainer.put(b) for b, _ in zip(held, range(batches), strict=False)]

        def held_out_loss(params) -> float:
            keys = jax.random.split(jax.random.key(1234), len(eval_batches))
            return float(np.mean([loss_fn(params, b, k) for b, k in zip(eval_batches, keys, strict=True)]))

        data = iter(trainer.data())
        rng = jax.random.key(config.seed)
        curve, train_losses, t0 = [], [], None
        for step in range(steps):
            batch = trainer.put(next(data))
            lr = trainer.learning_rate(step, 0.0)
            state, aux = step_fn(state, batch, jax.random.fold_in(rng, step), np.float32(lr))
            train_losses.append(float(aux["loss"]))
            if step == 0:
                t0 = time.perf_counter()  # after the compile
            if (step + 1) % every == 0 or step + 1 == steps:
                curve.append((step + 1, held_out_loss(state.params), held_out_loss(state.ema_params)))
                print(f"  step {step + 1}: held-out {curve[-1][1]:.4f} (EMA {curve[-1][2]:.4f})", flush=True)
    return {
        "curve": curve,
        "train_loss_last_100": float(np.mean(train_losses[-100:])),
        "steps_per_s": (steps - 1) / (time.perf_counter() - t0),
        "held_out_tokens": int(sum(np.sum(np.asarray(b["segment_ids"]) > 0) for b in eval_batches)),
    }


def main() -> None:
    overrides, rest = split_override_args(sys.argv[1:])
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--latents", required=True, help="a latent dataset of >= 2 parts (the last held out)")
    parser.add_argument("--arms", default="adamw:1e-3,muon:1e-3", help="kind:peak_lr, comma separated")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--every", type=int, default=250, help="held-out loss every this many steps")
    parser.add_argument("--batches", type=int, default=16, help="held-out packed batches")
    parser.add_argument("--json", default="", help="also write the results here")
    args = parser.parse_args(rest)
    work = pathlib.Path(tempfile.mkdtemp(prefix="optimizer_cpu_data_"))
    train_dir, held_out = split_dataset(pathlib.Path(args.latents), work)
    arms = [(kind, float(lr)) for kind, lr in (a.split(":") for a in args.arms.split(","))]
    results = []
    for seed in (int(s) for s in args.seeds.split(",")):
        for kind, lr in arms:
            config = load_config(
                "configs/small.py",
                [
                    *SCALED_DOWN,
                    f"train.latents={train_dir}",
                    f"train.steps={args.steps}",
                    f"train.optim.kind={kind}",
                    f"train.optim.lr={lr}",
                    f"seed={seed}",
                    *overrides,
                ],
            )
            print(f"{kind} lr {lr:g} seed {seed}", flush=True)
            result = run_arm(
                config, train_dir, held_out, steps=args.steps, every=args.every, batches=args.batches
            )
            results.append({"kind": kind, "lr": lr, "seed": seed, **result})
    steps = [s for s, _, _ in results[0]["curve"]]
    print(
        f"\n{len(jax.devices())} devices; held-out loss (weights / EMA) at steps {steps}; "
        f"{results[0]['held_out_tokens']} held-out tokens; overrides {overrides}\n"
    )
    print(
        "| optimizer | lr | seed | "
        + " | ".join(f"step {s}" for s in steps)
        + " | train loss, last 100 | steps/s |"
    )
    print("|---|---:|---:|" + "---:|" * len(steps) + "---:|---:|")
    for r in results:
        cells = " | ".join(f"{w:.4f} / {e:.4f}" for _, w, e in r["curve"])
        print(
            f"| {r['kind']} | {r['lr']:g} | {r['seed']} | {cells} | {r['train_loss_last_100']:.4f} | "
            f"{r['steps_per_s']:.2f} |"
        )
    for kind, lr in arms:
        mine = [r for r in results if r["kind"] == kind and r["lr"] == lr]
        if len(mine) > 1:
            mean = np.mean([[(w, e) for _, w, e in r["curve"]] for r in mine], axis=0)
            cells = " | ".join(f"{w:.4f} / {e:.4f}" for w, e in mean)
            print(f"| {kind} | {lr:g} | mean of {len(mine)} | {cells} | | |")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(results, indent=1))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
