"""Wall time of `jaxsora encode` with and without its encoders compiled ahead, side by side.

    python experiments/data/encode_time.py [--clips 600] [--channels 16] [--max-pixels 4096] [--workers 0]
        [--repeats 1] [--workdir /tmp/encode_time]

A VAE of ``configs/vae_synthetic.py`` (``--channels`` base channels, one training step: the weights do not
change the time) encodes ``--clips`` synthetic clips of at most ``--max-pixels`` pixels a frame, in a fresh
process per run (so no run reuses another's compilations): ``ahead`` as committed, and ``jit`` with
``encode.precompile_shapes`` turned off (each shape compiled when its first batch comes). The runs alternate,
``jit`` first, ``--repeats`` times; one line per run, then the median of each. On the GPU, ``--channels 64
--max-pixels 16384 --workers 12 --clips 10000`` is the recipe's encode.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import shutil
import statistics
import subprocess
import sys

RUN = """
import json, pathlib, shutil, sys, time
import jaxsora.encode as encode_mod
import jaxsora.train.vae as vae_train
args = json.loads(sys.argv[1])
if not args["ahead"]:
    encode_mod.precompile_shapes = lambda *a, **k: None
codec, config = vae_train.load_codec(args["vae"])
config.data.num_workers = args["workers"]
out = pathlib.Path(args["out"])
shutil.rmtree(out, ignore_errors=True)
t = time.perf_counter()
meta = encode_mod.encode_dataset(codec, config, out, part_size=1000, max_clips=args["clips"], progress=False)
print(json.dumps({"clips": meta["clips"], "seconds": time.perf_counter() - t}))
"""


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clips", type=int, default=600)
    p.add_argument("--channels", type=int, default=16)
    p.add_argument("--max-pixels", type=int, default=64 * 64)
    p.add_argument("--workers", type=int, default=0, help="Grain worker processes for the clips")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--workdir", default="/tmp/encode_time")
    args = p.parse_args(argv)
    work = pathlib.Path(args.workdir)
    vae = work / "vae"
    if not (vae / "config.json").exists():
        shutil.rmtree(vae, ignore_errors=True)
        overrides = [
            "vae_train.steps=1",
            "vae_train.time_limit_s=0",
            "vae_train.sample_every=0",
            f"vae.channels={args.channels}",
            f"data.max_pixels={args.max_pixels}",
            "data.num_workers=0",
        ]
        cli = [sys.executable, "-m", "jaxsora.cli", "train-vae", "--config", "configs/vae_synthetic.py"]
        subprocess.run([*cli, "--workdir", str(vae), *(f"--config.{o}" for o in overrides)], check=True)
    times: dict[str, list[float]] = {"jit": [], "ahead": []}
    for r in range(args.repeats):
        for mode in ("jit", "ahead"):
            run = {"ahead": mode == "ahead", "vae": str(vae), "workers": args.workers, "clips": args.clips}
            run["out"] = str(work / f"latents_{mode}")
            res = subprocess.run(
                [sys.executable, "-c", RUN, json.dumps(run)], check=True, capture_output=True, text=True
            )
            got = json.loads(res.stdout.strip().splitlines()[-1])
            times[mode].append(got["seconds"])
            print(f"run {r + 1} {mode:5s}: {got['clips']} clips in {got['seconds']:.1f} s", flush=True)
    jit, ahead = statistics.median(times["jit"]), statistics.median(times["ahead"])
    print(f"median: jit {jit:.1f} s, ahead {ahead:.1f} s, ratio {jit / ahead:.2f}x")


if __name__ == "__main__":
    main()
