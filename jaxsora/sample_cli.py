"""``jaxsora sample``: every generation mode from the command line, writing mp4 + gif + a settings JSON.

jaxsora sample --checkpoint runs/dit --prompt "a red circle moving left" --size 160x96 --frames 17
jaxsora sample --checkpoint runs/dit --prompt "..." --image first.png          # image-to-video
jaxsora sample --checkpoint runs/dit --prompt "..." --extend clip.mp4 --direction backward
jaxsora sample --checkpoint runs/dit --prompt "..." --loop
jaxsora sample --checkpoint runs/dit --prompt "..." --connect a.mp4 b.mp4
jaxsora sample --checkpoint runs/dit --prompt "..." --edit clip.mp4 --strength 0.6
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib

import numpy as np

from jaxsora.sample import parse_size


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="a `jaxsora train` workdir")
    p.add_argument("--prompt", action="append", required=True, help="a prompt (repeat for a batch)")
    p.add_argument("--size", default="", help="WxH pixels (default: the run's train.sample_size)")
    p.add_argument(
        "--frames",
        type=int,
        default=None,
        help="frames: 1 + 4k, 1 = an image (default 17); with --loop the loop's period, 4k (default 16)",
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--image", help="image-to-video: this image is the first frame")
    mode.add_argument("--extend", help="extend this video (see --direction, --new-frames)")
    mode.add_argument("--loop", action="store_true", help="a clip whose end runs into its start")
    mode.add_argument("--connect", nargs=2, metavar=("A", "B"), help="generate a transition from A to B")
    mode.add_argument("--edit", help="SDEdit this video under the prompt (see --strength)")
    p.add_argument("--direction", choices=("forward", "backward"), default="forward")
    p.add_argument("--new-frames", type=int, default=16, help="frames added by --extend (multiple of 4)")
    p.add_argument(
        "--middle-frames",
        type=int,
        default=8,
        help="--connect: generated frames (a multiple of 4; the last stands in for B's first frame)",
    )
    p.add_argument("--strength", type=float, default=0.6, help="--edit: noise level in (0, 1]")
    p.add_argument("--steps", type=int, default=30, help="sampler steps")
    p.add_argument("--guidance", type=float, default=4.0, help="classifier-free guidance scale")
    p.add_argument("--sampler", choices=("euler", "heun"), default="euler")
    p.add_argument(
        "--shift",
        type=float,
        default=None,
        help="time-grid shift (> 1: more steps at high noise); default: the training rule for the clip's size",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fps", type=float, default=8.0, help="frame rate of the written videos")
    p.add_argument("--no-expand", action="store_true", help="use prompts as given (no prompt expansion)")
    p.add_argument("--raw", action="store_true", help="the raw weights instead of the EMA")
    p.add_argument("--out", default="out/sample", help="output folder (default out/sample)")


def _read_video(path: str, height: int, width: int, max_frames: int | None = None) -> np.ndarray:
    """A video or image file at ``height x width``, its frame count cut to 1 + 4k."""
    from jaxsora.data import video_io

    if not pathlib.Path(path).is_file():
        raise FileNotFoundError(f"{path} not found")
    frames, _, _, _ = video_io.probe(path)
    frames = frames if max_frames is None else min(frames, max_frames)
    frames = 1 + (frames - 1) // 4 * 4
    return video_io.read_frames(path, list(range(frames)), height, width)


def run(args) -> dict:
    from jaxsora.data.source import UnreadableClipError
    from jaxsora.data.video_io import write_video
    from jaxsora.prompts import SyntheticWorldExpander
    from jaxsora.train.dit_eval import load_trained
    from jaxsora.train.metrics import to_uint8

    if not pathlib.Path(args.checkpoint, "checkpoints").is_dir():
        raise FileNotFoundError(f"no checkpoints in {args.checkpoint}: give a `jaxsora train` workdir")
    import jax

    from jaxsora import parallel

    # Several devices: sampling is sharded over all of them, the prompts (twice, with guidance's unconditional
    # half) over data as far as they divide, each clip's tokens over sequence for the rest.
    devices = jax.device_count()
    data = math.gcd(devices, 2 * len(args.prompt))
    mesh = parallel.make_mesh({"data": data, "sequence": devices // data}) if devices > 1 else None
    generator, params, config = load_trained(args.checkpoint, ema=not args.raw, mesh=mesh)
    width, height = parse_size(args.size or config.train.sample_size)
    expander = None if args.no_expand else SyntheticWorldExpander()
    prompts = [expander(p) if expander else p for p in args.prompt]
    for short, long in zip(args.prompt, prompts, strict=True):
        print(f"prompt: {short!r}" + (f"\n  expanded: {long!r}" if long != short else ""))
    kw = dict(
        seed=args.seed, steps=args.steps, guidance=args.guidance, sampler=args.sampler, shift=args.shift
    )
    if args.frames is None:
        args.frames = 16 if args.loop else 17
    try:
        if args.image:
            image = _read_video(args.image, height, width, max_frames=1)[0]
            videos, mode = generator.image_to_video(params, prompts, image, frames=args.frames, **kw), "image"
        elif args.extend:
            clip = _read_video(args.extend, height, width)
            videos = generator.extend(
                params, prompts, clip, new_frames=args.new_frames, direction=args.direction, **kw
            )
            mode = f"extend-{args.direction}"
        elif args.connect:
            a, b = (_read_video(path, height, width) for path in args.connect)
            videos, mode = (
                generator.connect(params, prompts, a, b, middle_frames=args.middle_frames, **kw),
                "connect",
            )
        elif args.loop:
            videos = np.concatenate(
                [
                    generator.loop(params, [p], frames=args.frames, height=height, width=width, **kw)
                    for p in prompts
                ]
            )
            mode = "loop"
        elif args.edit:
            clip = _read_video(args.edit, height, width)
            videos, mode = generator.edit(params, prompts, clip, strength=args.strength, **kw), "edit"
        else:
            videos = generator.text_to_video(
                params, prompts, frames=args.frames, height=height, width=width, **kw
            )
            mode = "text-to-image" if args.frames == 1 else "text-to-video"
    except UnreadableClipError as e:
        raise ValueError(str(e)) from e
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for i, video in enumerate(videos):
        frames = to_uint8(video)
        for ext in ("mp4", "gif") if len(frames) > 1 else ("png",):
            path = out / f"sample{i}.{ext}"
            if ext == "png":
                from PIL import Image

                Image.fromarray(frames[0]).save(path)
            else:
                write_video(path, frames, fps=args.fps)
            files.append(str(path))
    settings = {
        "mode": mode,
        "prompts": args.prompt,
        "expanded_prompts": prompts,
        "size": [width, height],
        "frames": [int(v.shape[0]) for v in videos],
        **{k: getattr(args, k) for k in ("seed", "steps", "guidance", "sampler", "shift", "checkpoint")},
        **({"strength": args.strength} if args.edit else {}),
        "files": files,
    }
    (out / "sample.json").write_text(json.dumps(settings, indent=2) + "\n")
    print(f"wrote {', '.join(files)} and {out / 'sample.json'}")
    return settings
