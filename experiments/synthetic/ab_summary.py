"""One line of figures per `jaxsora eval-dit` JSON: colour / shape / motion accuracy, stars read right (by asked
size), the VAE round trip's stars, and the sampling settings. Standard library only, so it runs where the
recipe ran (ab_recipe.sh calls it on its OUT folder).

    python experiments/synthetic/ab_summary.py OUT/eval_dit_*.json
    python experiments/synthetic/ab_summary.py experiments/synthetic/results/ab_eval_dit_2026-11-24p_*.json
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

SIZES = ("small", "medium", "large")


def _per_size(by_size: dict | None, shape: str) -> str:
    """'s 3/9 m 4/6 l 7/12' for one shape of a ``*_by_shape_and_size`` table; '-' when the table is missing
    (eval JSONs from before the per-size split)."""
    if not by_size or shape not in by_size:
        return "-"
    row = by_size[shape]
    return " ".join(f"{s[0]} {row[s].replace(' ', '')}" for s in SIZES if s in row)


def summary_line(path: pathlib.Path) -> str:
    s = json.loads(path.read_text())["summary"]
    settings = s.get("settings") or {}
    stars = (s.get("shape_accuracy_by_shape") or {}).get("star", "-")
    ceiling = (s.get("vae_ceiling_shape_accuracy_by_shape") or {}).get("star", "-")
    return (
        f"{path.name}: colour {s['colour_accuracy']:.0%} shape {s['shape_accuracy']:.0%} "
        f"motion {s['motion_accuracy']:.0%} | stars {stars.replace(' ', '')} "
        f"({_per_size(s.get('shape_accuracy_by_shape_and_size'), 'star')}) "
        f"| VAE stars {ceiling.replace(' ', '')} "
        f"({_per_size(s.get('vae_ceiling_shape_accuracy_by_shape_and_size'), 'star')}) "
        f"| {settings.get('sampler', '?')} {settings.get('steps', '?')} steps, guidance {settings.get('guidance')}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", type=pathlib.Path, help="eval_dit JSON files")
    args = parser.parse_args(argv)
    status = 0
    for path in args.files:
        try:
            print(summary_line(path))
        except (OSError, ValueError, KeyError) as e:  # one unreadable file does not hide the others
            print(f"{path}: unreadable ({type(e).__name__}: {e})", file=sys.stderr)
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
