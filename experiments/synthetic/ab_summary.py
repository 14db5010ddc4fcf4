"""One line of figures per `jaxsora eval-dit` JSON: colour / shape / motion accuracy, stars read right (by asked
size), the VAE round trip's stars, and the sampling settings; with the arm's log beside it (ab_recipe.sh's
``log_<arm>.txt``), the DiT's steps and clips a second and when the recipe's evaluation ended. Standard library
only, so it runs where the recipe ran (ab_recipe.sh calls it on its OUT folder).

    python experiments/synthetic/ab_summary.py OUT/eval_dit_*.json
    python experiments/synthetic/ab_summary.py experiments/synthetic/results/ab_eval_dit_2026-11-24p_*.json
"""

from __future__ import annotations

import argparse
import json
import pathlib
import re
import sys

SIZES = ("small", "medium", "large")


def _per_size(by_size: dict | None, shape: str) -> str:
    """'s 3/9 m 4/6 l 7/12' for one shape of a ``*_by_shape_and_size`` table; '-' when the table is missing
    (eval JSONs from before the per-size split)."""
    if not by_size or shape not in by_size:
        return "-"
    row = by_size[shape]
    return " ".join(f"{s[0]} {row[s].replace(' ', '')}" for s in SIZES if s in row)


def _training(log: pathlib.Path) -> str:
    """'DiT 5002 steps, 3422 clips/s, evaluated at 464 s' from an arm's recipe log ('' without one)."""
    if not log.is_file():
        return ""
    text = log.read_text(errors="replace").replace("\r", "\n")
    parts = []
    train = re.findall(r"^train: .*$", text, re.M)
    if train:
        fields = dict(re.findall(r"(\w+)=([^,\s]+)", train[-1]))
        if "steps" in fields:
            parts.append(f"DiT {fields['steps']} steps")
        if "clips_per_s" in fields:
            parts.append(f"{float(fields['clips_per_s']):.0f} clips/s")
    done = re.findall(r"^\[recipe\] evaluated at (\d+) s", text, re.M)
    if done:
        parts.append(f"evaluated at {done[-1]} s")
    return ", ".join(parts)


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
        + (f" | {run}" if (run := _training(path.parent / _log_name(path))) else "")
    )


def _log_name(path: pathlib.Path) -> str:
    """``log_<arm>.txt`` for ``eval_dit_<arm>.json`` and ``eval_dit_<arm>_x<k>.json``."""
    arm = re.sub(r"_x\d+$", "", path.stem.removeprefix("eval_dit_"))
    return f"log_{arm}.txt"


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
