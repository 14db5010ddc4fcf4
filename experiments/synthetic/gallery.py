"""A contact sheet of the gifs `jaxsora eval-dit` / `eval-modes` write: first, middle and last frame of each,
labelled with its prompt (and mode), for the README.

    python experiments/synthetic/gallery.py RUNS/dit --out sheet.png [--per-mode 2]

reads RUNS/dit/eval_dit.json + eval_dit/sample*.gif and RUNS/dit/eval_modes.json + eval_modes/*.gif (either may
be missing) and writes one PNG; `--copy DIR` also copies the gifs it used there.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import shutil
import sys

import numpy as np
from PIL import Image, ImageSequence

REPO = pathlib.Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from jaxsora.demo import frames_sheet  # noqa: E402

MODES = {
    "sample": ("eval_dit.json", None, "text-to-video"),
    "i2v": ("eval_modes.json", "i2v", "image-to-video"),
    "extend": ("eval_modes.json", "extend", "extend forward"),
    "loop": ("eval_modes.json", "loop", "loop"),
}


def read_gif(path: pathlib.Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.stack([np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(im)])


def collect(workdir: pathlib.Path, per_mode: int) -> list[tuple[pathlib.Path, str]]:
    """(gif, label) pairs: the first ``per_mode`` gifs of each mode whose results are in ``workdir``."""
    out = []
    for stem, (results, key, title) in MODES.items():
        path = workdir / results
        if not path.exists():
            continue
        data = json.loads(path.read_text())
        cases = data["videos"] if key is None else data["cases"].get(key, [])
        folder = workdir / results.removesuffix(".json")
        for k in range(per_mode):
            gif = folder / f"{stem}{k:02d}.gif"
            if gif.exists() and k < len(cases):
                out.append((gif, f"{title}: {cases[k]['prompt']}"))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("workdir", type=pathlib.Path, help="the DiT workdir that eval-dit / eval-modes wrote into")
    p.add_argument("--out", type=pathlib.Path, required=True, help="the PNG to write")
    p.add_argument("--per-mode", type=int, default=2, help="gifs per mode")
    p.add_argument("--copy", type=pathlib.Path, help="also copy the gifs used into this folder")
    args = p.parse_args(argv)
    chosen = collect(args.workdir, args.per_mode)
    if not chosen:
        raise SystemExit(f"no eval_dit.json / eval_modes.json gifs under {args.workdir}")
    videos = [read_gif(g) for g, _ in chosen]
    frames_sheet([videos], [label for _, label in chosen], args.out)
    if args.copy:
        args.copy.mkdir(parents=True, exist_ok=True)
        for gif, _ in chosen:
            shutil.copy(gif, args.copy / f"{gif.parent.name}_{gif.name}")
    print(f"wrote {args.out} ({len(chosen)} clips)")


if __name__ == "__main__":
    main()
