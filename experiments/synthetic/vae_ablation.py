"""Which VAE settings learn fastest on the synthetic world? Trains each variant for a fixed wall-clock budget
on one GPU and prints held-out PSNR/SSIM, so the recipe's choices are measured, not guessed.

    python experiments/synthetic/vae_ablation.py --steps 150 --num 64 \
        "vae.norm=rms" "vae.norm=group" "vae.norm=group vae_train.optim.lr=2e-3"

Each positional argument is one variant: space-separated config overrides on top of configs/vae_synthetic.py.
"""

from __future__ import annotations

import argparse
import tempfile

from jaxsora.config import load_config
from jaxsora.train.vae import VAETrainer, load_codec
from jaxsora.train.vae_eval import evaluate


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("variants", nargs="+")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--num", type=int, default=64, help="held-out clips per evaluation")
    parser.add_argument("--config", default="configs/vae_synthetic.py")
    args = parser.parse_args()
    rows = []
    for variant in args.variants:
        overrides = [*variant.split(), f"vae_train.steps={args.steps}", "vae_train.sample_every=0"]
        workdir = tempfile.mkdtemp(prefix="vae-ablation-")
        result = VAETrainer(load_config(args.config, overrides), workdir).run(progress=False)
        codec, config = load_codec(workdir)
        # Square crops, as in training: two shapes, two compilations per evaluation.
        ev = evaluate(codec, config, num_clips=args.num, seed=1_000_003, native_aspect=False)["all"]
        raw_codec = load_codec(workdir, ema=False)[0]
        raw = evaluate(raw_codec, config, num_clips=args.num, seed=1_000_003, native_aspect=False)["all"]
        rows.append((variant, result["train_seconds"], result["psnr"], ev["psnr"], raw["psnr"], ev["ssim"]))
        print(
            f"{variant}: seconds={rows[-1][1]:.0f} train_psnr={rows[-1][2]:.2f} eval_psnr_ema={ev['psnr']:.2f} "
            f"eval_psnr_raw={raw['psnr']:.2f} ssim={ev['ssim']:.4f}",
            flush=True,
        )
    print(
        f"\n| variant ({args.steps} steps each) | seconds, compiles included | train PSNR | held-out PSNR (EMA) | (raw) | SSIM |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for v, steps, tp, ep, rp, ss in rows:
        print(f"| {v} | {steps:.0f} | {tp:.2f} | {ep:.2f} | {rp:.2f} | {ss:.4f} |")


if __name__ == "__main__":
    main()
