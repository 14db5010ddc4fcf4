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
    print(
        f"train-vae: step {config.vae_train.steps}: " + ", ".join(f"{k}={v:.4g}" for k, v in result.items())
    )
    print(f"checkpoints and TensorBoard logs in {args.workdir}/")


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

    config = commands.add_parser("config", help="show configs").add_subparsers(
        dest="config_command", metavar="SUBCOMMAND", required=True
    )
    p = config.add_parser("show", help="print the config after overrides")
    _add_config_arg(p)
    p.set_defaults(run=_cmd_config_show)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = build_parser()
    try:
        overrides, rest = split_override_args(argv)
        args = parser.parse_args(rest)
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
