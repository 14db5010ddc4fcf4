"""The ``jaxsora`` command line: ``jaxsora <command> [--config FILE] [--config.key=value ...]``.

Every command that takes a config accepts overrides of any config key. Mistakes in the command line, the
config or the input data are one-line errors naming the fix, not tracebacks.
"""

from __future__ import annotations

import argparse
import logging
import pathlib
import sys

from jaxsora.config import ConfigError, load_config, split_override_args

DEFAULT_CONFIG = "configs/tiny.py"


def _add_config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        default=DEFAULT_CONFIG,
        help=f"config file (default {DEFAULT_CONFIG}); override any key with --config.KEY=VALUE",
    )


def _cmd_data_preview(args, overrides) -> None:
    from jaxsora.data.preview import preview

    config = load_config(args.config, overrides)
    out = pathlib.Path(args.out)
    table = preview(config, out, num_clips=args.num, num_videos=args.videos)
    print(table)
    print(f"wrote {out / 'contact_sheet.png'}, {args.videos} clips (mp4 + gif) and buckets.txt in {out}/")


def _cmd_train_vae(args, overrides) -> None:
    from jaxsora.train.vae import VAETrainer

    config = load_config(args.config, overrides)
    result = VAETrainer(config, args.workdir).run()
    reached = int(result.get("steps", config.vae_train.steps))  # a time limit or preemption may stop it early
    stats = ", ".join(f"{k}={v:.4g}" for k, v in result.items() if k != "steps")
    print(f"train-vae: step {reached} of {config.vae_train.steps}: {stats}")
    print(f"checkpoints and TensorBoard logs in {args.workdir}/")


def _cmd_eval_vae(args, overrides) -> None:
    from jaxsora.train.vae_eval import run_eval

    sizes = []
    for size in filter(None, args.throughput.split(",")):
        w, _, h = size.partition("x")
        if not (w.isdigit() and h.isdigit()):
            raise ValueError(f"--throughput sizes look like 256x256,1280x720; got '{size}'")
        sizes.append((int(h), int(w)))
    print(
        run_eval(
            args.workdir,
            num_clips=args.num,
            seed=args.seed,
            ema=not args.raw,
            sizes=sizes,
            overrides=overrides,
        )
    )


def _cmd_encode(args, overrides) -> None:
    from jaxsora.config import apply_overrides
    from jaxsora.encode import encode_dataset
    from jaxsora.train.vae import load_codec

    codec, config = load_codec(args.vae)
    if args.config:  # the data to encode: another config's data section (e.g. a folder of videos)
        config.data = load_config(args.config, overrides).data
    elif overrides:
        apply_overrides(config, overrides)
    meta = encode_dataset(
        codec,
        config,
        args.out,
        extra_meta={"vae_workdir": str(pathlib.Path(args.vae).resolve())},
        part_size=args.part_size,
        max_clips=args.max_clips,
        chunk_latents=args.chunk_latents,
    )
    print(f"encoded {meta['clips']} clips into {args.out}/ (latent channels {meta['latent_channels']})")


def _cmd_train(args, overrides) -> None:
    from jaxsora.train.dit import DiTTrainer

    config = load_config(args.config, overrides)
    result = DiTTrainer(config, args.workdir).run()
    print("train: " + ", ".join(f"{k}={v:.4g}" for k, v in result.items()))
    print(f"checkpoints, samples and TensorBoard logs in {args.workdir}/")


def _run_eval(command: str, evaluate, args, overrides, keys: tuple[str, ...]) -> None:
    """An evaluation command: ``evaluate(workdir, **{key: args.key})``, its summary printed as JSON."""
    import json

    if overrides:
        raise ValueError(f"{command} takes no --config overrides; it uses the run's config")
    summary = evaluate(args.workdir, **{k: getattr(args, k) for k in keys})
    print(json.dumps(summary, indent=2))
    out = command.replace("-", "_")
    sheet = f", a labelled contact sheet in {args.workdir}/{out}/sheet.png" if command == "eval-dit" else ""
    print(f"per-case results in {args.workdir}/{out}.json, sample gifs in {args.workdir}/{out}/{sheet}")


def _add_eval_arguments(p, *, num: int, seed: int, what: str) -> None:
    p.add_argument("--workdir", required=True, help="a `jaxsora train` workdir")
    p.add_argument("--num", type=int, default=num, help=f"{what} (default {num})")
    p.add_argument("--seed", type=int, default=seed, help="synthetic-world seed of the held-out clips")
    p.add_argument("--sizes", default="128x128,160x96,96x160", help="WxH sizes, cycled over the clips")
    p.add_argument("--steps", type=int, default=30, help="sampling steps (default 30)")
    p.add_argument("--guidance", type=float, default=4.0, help="classifier-free guidance scale")
    p.add_argument(
        "--sampler",
        default="euler",
        choices=("euler", "heun"),
        help="euler (default) or heun (2 calls a step)",
    )
    p.add_argument(
        "--shift",
        type=float,
        default=None,
        help="time-grid shift (> 1: more steps at high noise); default: the training rule for the clip's size",
    )


def _cmd_eval_dit(args, overrides) -> None:
    from jaxsora.train.dit_eval import evaluate

    keys = ("num", "seed", "sizes", "frames", "steps", "guidance", "sampler", "shift", "batch")
    _run_eval("eval-dit", evaluate, args, overrides, (*keys, "vae_ceiling", "score_workers"))


def _cmd_eval_modes(args, overrides) -> None:
    from jaxsora.train.modes_eval import evaluate_modes

    keys = (
        "num",
        "seed",
        "sizes",
        "frames",
        "given_frames",
        "new_frames",
        "steps",
        "guidance",
        "sampler",
        "shift",
        "modes",
    )
    _run_eval("eval-modes", evaluate_modes, args, overrides, keys)


def _cmd_sample(args, overrides) -> None:
    from jaxsora.sample_cli import run

    if overrides:
        raise ValueError("sample takes no --config overrides; it uses the run's config")
    run(args)


def _cmd_demo(args, overrides) -> None:
    from jaxsora.demo import run_demo

    if overrides:
        raise ValueError("demo takes no --config overrides; use its --vae-steps/--dit-steps/--clips")
    run_demo(args.out, vae_steps=args.vae_steps, clips=args.clips, dit_steps=args.dit_steps)


def _cmd_config_show(args, overrides) -> None:
    print(load_config(args.config, overrides))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jaxsora",
        description="Sora-style text-to-video in JAX: data, VAE, diffusion transformer, sampling.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    data = commands.add_parser("data", help="inspect the data pipeline").add_subparsers(
        dest="data_command", metavar="SUBCOMMAND", required=True
    )
    p = data.add_parser(
        "preview", help="contact sheet, sample clips and shape buckets of the pipeline's output"
    )
    _add_config_arg(p)
    p.add_argument("--out", default="out/preview", help="output folder (default out/preview)")
    p.add_argument("--num", type=int, default=200, help="clips to draw for the bucket table (default 200)")
    p.add_argument("--videos", type=int, default=4, help="clips to write as mp4 and gif (default 4)")
    p.set_defaults(run=_cmd_data_preview)

    p = commands.add_parser(
        "train-vae", help="train the causal video VAE (resumes from the workdir's checkpoints)"
    )
    _add_config_arg(p)
    p.add_argument("--workdir", required=True, help="checkpoints, logs and reconstructions go here")
    p.set_defaults(run=_cmd_train_vae)

    p = commands.add_parser(
        "eval-vae", help="reconstruction PSNR/SSIM on held-out clips; encode/decode speed"
    )
    p.add_argument(
        "--workdir", required=True, help="a train-vae workdir (--config.data.KEY=V overrides its data)"
    )
    p.add_argument("--num", type=int, default=256, help="held-out clips (default 256)")
    p.add_argument("--seed", type=int, default=1_000_003, help="synthetic-world seed of the held-out clips")
    p.add_argument("--raw", action="store_true", help="evaluate the raw weights instead of the EMA")
    p.add_argument("--throughput", default="", help="also time encode/decode of 17 frames at these WxH sizes")
    p.set_defaults(run=_cmd_eval_vae)

    p = commands.add_parser(
        "encode", help="encode a source with a trained VAE into a latent dataset (resumable)"
    )
    p.add_argument("--vae", required=True, help="a train-vae workdir")
    p.add_argument("--out", required=True, help="latent dataset folder")
    p.add_argument(
        "--config", default="", help="take the data section from this config (default: the VAE run's)"
    )
    p.add_argument(
        "--max-clips", type=int, default=None, help="stop after this many clips (default: one epoch)"
    )
    p.add_argument("--part-size", type=int, default=256, help="clips per ArrayRecord part file")
    p.add_argument(
        "--chunk-latents", type=int, default=0, help="stream the encoder this many latent frames a call"
    )
    p.set_defaults(run=_cmd_encode)

    p = commands.add_parser(
        "train", help="train the diffusion transformer on a latent dataset (resumes from the workdir)"
    )
    _add_config_arg(p)
    p.add_argument("--workdir", required=True, help="checkpoints, logs and samples go here")
    p.set_defaults(run=_cmd_train)

    p = commands.add_parser(
        "eval-dit", help="text-to-video on held-out synthetic prompts, scored by the world's describe()"
    )
    _add_eval_arguments(p, num=64, seed=2_000_003, what="prompts")
    p.add_argument("--frames", type=int, default=17, help="frames per video (1 + 4k)")
    p.add_argument("--batch", type=int, default=32, help="videos generated at once")
    p.add_argument(
        "--no-vae-ceiling",
        dest="vae_ceiling",
        action="store_false",
        help="skip scoring the prompts' true clips after a VAE round trip (the same for every sampling setting)",
    )
    p.add_argument(
        "--score-workers",
        type=int,
        default=None,
        help="processes scoring videos beside the generation (default: up to 8, none on <= 2 cores; 0 = none)",
    )
    p.set_defaults(run=_cmd_eval_dit)

    p = commands.add_parser(
        "eval-modes",
        help="image-to-video, forward extension, loops and text-to-image on held-out synthetic clips, scored",
        description="Score the generation modes of a trained DiT (see jaxsora/train/modes_eval.py).",
    )
    _add_eval_arguments(p, num=32, seed=3_000_017, what="cases per mode")
    p.add_argument(
        "--frames",
        type=int,
        default=17,
        help="frames of image-to-video clips (1 + 4k); loops have one fewer (their period, a multiple of 4)",
    )
    p.add_argument("--given-frames", type=int, default=9, help="given frames of an extension case (1 + 4k)")
    p.add_argument("--new-frames", type=int, default=8, help="frames an extension adds (a multiple of 4)")
    p.add_argument(
        "--modes", default="i2v,extend,loop,t2i", help="comma-separated subset of i2v,extend,loop,t2i"
    )
    p.set_defaults(run=_cmd_eval_modes)

    p = commands.add_parser(
        "sample",
        help="generate: text-to-video/image, image-to-video, extend, loop, connect, SDEdit",
        description="Generate videos with a trained DiT (writes mp4, gif and sample.json).",
    )
    from jaxsora.sample_cli import add_arguments

    add_arguments(p)
    p.set_defaults(run=_cmd_sample)

    p = commands.add_parser(
        "demo",
        help="train the tiny VAE and DiT on the synthetic world here, then sample prompts at 3 aspect ratios",
    )
    p.add_argument("--out", default="out/demo", help="output folder (default out/demo); reruns resume")
    p.add_argument("--vae-steps", type=int, default=200, help="VAE training steps (default 200)")
    p.add_argument("--clips", type=int, default=512, help="clips to encode for the DiT (default 512)")
    p.add_argument("--dit-steps", type=int, default=300, help="DiT training steps (default 300)")
    p.set_defaults(run=_cmd_demo)

    config = commands.add_parser("config", help="show configs").add_subparsers(
        dest="config_command", metavar="SUBCOMMAND", required=True
    )
    p = config.add_parser("show", help="print the config after overrides")
    _add_config_arg(p)
    p.set_defaults(run=_cmd_config_show)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("jaxsora").setLevel(logging.INFO)
    logging.getLogger("absl").setLevel(logging.WARNING)
    from jaxsora.data.pipeline import ensure_absl_flags

    ensure_absl_flags()
    parser = build_parser()
    try:
        overrides, rest = split_override_args(argv)
        args = parser.parse_args(rest)
        from jaxsora.parallel import initialize_distributed

        initialize_distributed()  # one process of several (multi-host): join the others first
        args.run(args, overrides)
    except (ConfigError, ValueError, FileNotFoundError, ImportError) as e:
        print(f"jaxsora: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("jaxsora: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
