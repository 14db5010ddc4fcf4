"""``jaxsora demo``: the whole system on whatever backend is present, in minutes on a CPU.

1. trains the tiny VAE on the synthetic world (``configs/tiny.py``),
2. encodes synthetic clips into a latent dataset,
3. trains the tiny DiT (with its byte-level text encoder) on them,
4. samples a grid of prompts at three aspect ratios (landscape, square, portrait) and writes them as gifs with
   a contact sheet, and prints where everything is.

Training clips are square 64x64 crops (two shapes to compile on a CPU instead of one per aspect ratio); the
samples are made at three aspect ratios all the same, which 3D RoPE allows. The step counts are small so a
laptop finishes in a few minutes: expect blurry, roughly coloured blobs, not the synthetic world's crisp shapes (the GPU recipe, ``experiments/synthetic/recipe.sh``, trains for real).
Every stage resumes: run it again with more steps (``--vae-steps``, ``--dit-steps``) to continue.
Stages 1-3 are :func:`train_models`, which ``colab/quickstart.ipynb`` calls too.
"""

from __future__ import annotations

import pathlib
from collections.abc import Sequence

import numpy as np

DEMO_PROMPTS = (
    "a red circle moving to the right",
    "a yellow square moving up",
    "a large blue star that stays still",
    "a green triangle moving down and left",
)
SIZES = ((80, 48), (64, 64), (48, 80))  # WxH: landscape, square, portrait (multiples of 16)

DEMO_OVERRIDES = [  # square 64x64 crops: two clip shapes (9 frames, 1 frame) to compile, not a dozen
    "data.crop=square",
    "data.synthetic.min_frames=9",
    "data.max_frames=9",
    "data.frame_choices=(1, 9)",
    "data.max_batch_pixels=69632",  # 8 clips of 17 x 64 x 64
    "data.max_batch_size=8",
    "vae_train.log_every=25",
    "vae_train.sample_every=0",
    "vae_train.ckpt_every=100",
    "packing.seq_len=256",
    "packing.max_clips_per_pack=8",
    "packing.batch_size=4",
    "text.max_len=128",
    "train.log_every=25",
    "train.ckpt_every=100",
    "train.optim.lr=1e-3",
    "train.ema_decay=0.99",
    "mesh.data=1",
]


def train_models(
    out: str | pathlib.Path,
    *,
    vae_steps: int = 200,
    clips: int = 512,
    dit_steps: int = 300,
    overrides: Sequence[str] = (),
    progress: bool = True,
) -> pathlib.Path:
    """Stages 1-3 of the demo: the tiny VAE (``out/vae``), the latent dataset (``out/latents``) and the tiny
    DiT (``out/dit``), each resuming where a previous call stopped. ``overrides`` (``key=value``, applied after
    the demo's own) shrink or grow the run, e.g. the Colab notebook's CI settings. Returns the DiT workdir:
    what :func:`jaxsora.train.dit_eval.load_trained` and ``jaxsora sample --checkpoint`` take."""
    import jax

    from jaxsora.config import load_config
    from jaxsora.data.latents import is_complete, read_meta
    from jaxsora.encode import encode_dataset
    from jaxsora.train.dit import DiTTrainer
    from jaxsora.train.vae import VAETrainer, load_codec

    out = pathlib.Path(out)
    backend = jax.default_backend()
    print(f"jaxsora demo on {backend} ({jax.device_count()} device(s)); writing to {out}/")
    base = [*DEMO_OVERRIDES, f"vae_train.steps={vae_steps}", f"train.steps={dit_steps}"]
    base = [*base, "mesh.data=-1"] if backend != "cpu" else base
    config = load_config("configs/tiny.py", [*base, *overrides])

    print(f"[1/4] training the VAE ({vae_steps} steps)")
    VAETrainer(config, out / "vae").run(progress=progress)
    latents = out / "latents"
    if not ((latents / "meta.json").is_file() and is_complete(read_meta(latents, allow_incomplete=True))):
        print(f"[2/4] encoding {clips} clips")
        codec, vae_config = load_codec(out / "vae")
        encode_dataset(
            codec,
            vae_config,
            latents,
            max_clips=clips,
            part_size=256,
            progress=progress,
            extra_meta={"vae_workdir": str((out / "vae").resolve())},
        )
    else:
        print("[2/4] latents already encoded")
    config.unlock()
    config.train.latents = str(latents)
    print(f"[3/4] training the DiT ({dit_steps} steps)")
    DiTTrainer(config, out / "dit").run(progress=progress)
    return out / "dit"


def run_demo(
    out: str | pathlib.Path,
    *,
    vae_steps: int = 200,
    clips: int = 512,
    dit_steps: int = 300,
    steps: int = 20,
    guidance: float = 3.0,
    frames: int = 9,
    progress: bool = True,
) -> dict:
    from jaxsora.prompts import SyntheticWorldExpander
    from jaxsora.train.dit_eval import load_trained
    from jaxsora.train.metrics import to_uint8

    out = pathlib.Path(out)
    dit = train_models(out, vae_steps=vae_steps, clips=clips, dit_steps=dit_steps, progress=progress)

    print("[4/4] sampling")
    generator, params, _ = load_trained(dit)
    expand = SyntheticWorldExpander()
    prompts = [expand(p) for p in DEMO_PROMPTS]
    rows, files = [], []
    for width, height in SIZES:
        videos = generator.text_to_video(
            params, prompts, frames=frames, height=height, width=width, seed=0, steps=steps, guidance=guidance
        )
        rows.append([to_uint8(v) for v in videos])
        for i, video in enumerate(rows[-1]):
            path = out / "samples" / f"prompt{i}_{width}x{height}.gif"
            path.parent.mkdir(parents=True, exist_ok=True)
            _write_gif(path, video)
            files.append(path)
    sheet = out / "contact_sheet.png"
    frames_sheet(rows, prompts, sheet)
    (out / "prompts.txt").write_text(
        "".join(f"{short}\n  -> {long}\n" for short, long in zip(DEMO_PROMPTS, prompts, strict=True))
    )
    print(f"wrote {len(files)} sample gifs in {out / 'samples'}/, the contact sheet {sheet}")
    print(f"and the prompts (short -> expanded) in {out / 'prompts.txt'}")
    return {"contact_sheet": str(sheet), "samples": [str(f) for f in files]}


def _write_gif(path: pathlib.Path, video: np.ndarray) -> None:
    from PIL import Image

    frames = [Image.fromarray(f) for f in video]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=125, loop=0)


def frames_sheet(rows: list[list[np.ndarray]], prompts: list[str], path: pathlib.Path) -> None:
    """One row per prompt: first, middle and last frame at each aspect ratio, side by side."""
    from PIL import Image, ImageDraw

    pad, label = 4, 14
    cells = []
    for i in range(len(prompts)):
        strips = [np.concatenate([v[0], v[len(v) // 2], v[-1]], axis=1) for v in (row[i] for row in rows)]
        height = max(s.shape[0] for s in strips)
        width = sum(s.shape[1] for s in strips) + pad * (len(strips) - 1)
        cell = np.full((height + label, width, 3), 255, np.uint8)
        x = 0
        for s in strips:
            cell[label : label + s.shape[0], x : x + s.shape[1]] = s
            x += s.shape[1] + pad
        cells.append(cell)
    width = max(c.shape[1] for c in cells)
    sheet = Image.new("RGB", (width, sum(c.shape[0] + pad for c in cells)), "white")
    draw = ImageDraw.Draw(sheet)
    y = 0
    for cell, prompt in zip(cells, prompts, strict=True):
        sheet.paste(Image.fromarray(cell), (0, y))
        draw.text((2, y + 1), prompt[:110], fill=(0, 0, 0))
        y += cell.shape[0] + pad
    sheet.save(path)
