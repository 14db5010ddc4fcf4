"""One line of figures per `jaxsora eval-dit` JSON: colour / shape / motion accuracy, stars read right (by asked
size), the VAE round trip's stars, and the sampling settings; with the arm's log beside it (ab_recipe.sh's
``log_<arm>.txt``), the DiT's steps and clips a second and when the recipe's evaluation ended. Standard library
only, so it runs where the recipe ran (ab_recipe.sh calls it on its OUT folder).

    python experiments/synthetic/ab_summary.py OUT/eval_dit_*.json
    python experiments/synthetic/ab_summary.py experiments/synthetic/results/ab_eval_dit_2026-11-24p_*.json

``--shapes`` prints instead one table pooled over the files: per asked shape and size, how often it was read
right, the median score of the asked shape (``describe``'s soft IoU of the object with that shape's template:
~0.9-1.0 for a cleanly drawn object) and of the best-scoring shape, and what the misses were read as. Compare
``python experiments/synthetic/describe_ceiling.py``, which scores the true clips under blur the same way.
``--visibility`` prints one table pooled over the files: shapes read right among the objects that are never
wholly in the frame (the prompt says "partly visible") and among the rest, for the samples and for the VAE's
round trip of the true clips.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import re
import statistics
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


def _ranked(reads: list[str | None], none: str = "not found") -> str:
    """'square 11, circle 8, not found 1': how often each shape was read, most often first (None: ``none``)."""
    counts: dict[str, int] = {}
    for got in reads:
        counts[got or none] = counts.get(got or none, 0) + 1
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))


def _misses(videos: list[dict], key: str = "read") -> str:
    """'misses read as square 11, circle 8, none 1' over every prompt object whose shape was misread (``key``
    "vae_read": on the VAE's round trip of the true clips)."""
    gots = [obj["got"] and obj["got"]["shape"] for video in videos for obj in video.get(key, [])]
    asked = [obj["asked"]["shape"] for video in videos for obj in video.get(key, [])]
    missed = [g for g, a in zip(gots, asked, strict=True) if g != a]
    return "misses read as " + _ranked(missed, "none") if missed else "no shape misses"


def partly_visible(video: dict) -> list[bool | None]:
    """Per prompt object of one video: whether it is never wholly in the frame (eval-dit's ``status``
    "partial"). JSONs from before eval-dit kept the status say it in the prompt instead: the object's clause
    (from its "<size> <colour> <shape>" to the next object's) holds "partly visible". None where neither says."""
    read = video.get("read", [])
    if read and all("status" in obj["asked"] for obj in read):
        return [obj["asked"]["status"] == "partial" for obj in read]
    prompt, starts, pos = video.get("prompt", "").lower(), [], 0
    for obj in read:
        a = obj["asked"]
        i = prompt.find(f"{a.get('size')} {a.get('colour')} {a.get('shape')}", pos)
        starts.append(i)
        pos = i + 1 if i >= 0 else pos
    out = []
    for k, i in enumerate(starts):
        if i < 0:
            out.append(None)
            continue
        ends = [j for j in starts[k + 1 :] if j > i]
        out.append("partly visible" in prompt[i : ends[0] if ends else len(prompt)])
    return out


def _visibility_counts(videos: list[dict]) -> dict[tuple[bool, str], list[int]]:
    """(partly visible, "dit" or "vae") -> [read right, objects], over the objects whose visibility is known."""
    counts: dict[tuple[bool, str], list[int]] = {}
    for video in videos:
        flags = partly_visible(video)
        for key in ("read", "vae_read"):
            for obj, partly in zip(video.get(key, []), flags, strict=False):
                if partly is None:
                    continue
                c = counts.setdefault((partly, "dit" if key == "read" else "vae"), [0, 0])
                c[0] += obj["got"] is not None and obj["got"]["shape"] == obj["asked"]["shape"]
                c[1] += 1
    return counts


def _partly(videos: list[dict]) -> str:
    """'partly visible 25/37 (VAE 31/37)': shapes read right among the objects never wholly in the frame."""
    counts = _visibility_counts(videos)
    if (True, "dit") not in counts:
        return "partly visible -"
    r, n = counts[(True, "dit")]
    text = f"partly visible {r}/{n}"
    if (True, "vae") in counts:
        text += " (VAE {}/{})".format(*counts[(True, "vae")])
    return text


def visibility_table(paths: list[pathlib.Path]) -> list[str]:
    """The ``--visibility`` table (markdown) over the prompt objects of every file."""
    videos = [video for path in paths for video in json.loads(path.read_text()).get("videos", [])]
    counts = _visibility_counts(videos)
    misses = {k: n - r for k, (r, n) in counts.items()}
    out = [
        "| prompt objects | samples: shape read right | share of the samples' misses | VAE round trip: read right |",
        "|---|---:|---:|---:|",
    ]
    for partly, label in ((False, "wholly in the frame at some time"), (True, "partly visible throughout")):
        r, n = counts.get((partly, "dit"), [0, 0])
        vr, vn = counts.get((partly, "vae"), [0, 0])
        total = misses.get((False, "dit"), 0) + misses.get((True, "dit"), 0)
        out.append(
            f"| {label} | {r} / {n} ({r / max(n, 1):.0%}) | {n - r} / {total} | "
            + (f"{vr} / {vn} ({vr / vn:.0%})" if vn else "-")
            + " |"
        )
    # Per asked shape: the samples' reads of each group, and what its misses were read as.
    shapes: dict[tuple[str, bool], list] = {}
    for video in videos:
        for obj, partly in zip(video.get("read", []), partly_visible(video), strict=False):
            if partly is not None:
                shapes.setdefault((obj["asked"]["shape"], partly), []).append(
                    obj["got"] and obj["got"]["shape"]
                )
    out += [
        "",
        "| asked shape | wholly in the frame: read right, misses read as | partly visible: read right, misses read as |",
    ]
    out.append("|---|---|---|")
    for shape in sorted({k[0] for k in shapes}):
        cells = []
        for partly in (False, True):
            reads = shapes.get((shape, partly), [])
            if not reads:
                cells.append("-")
                continue
            missed = [got for got in reads if got != shape]
            cells.append(
                f"{len(reads) - len(missed)} / {len(reads)}" + (f"; {_ranked(missed)}" if missed else "")
            )
        out.append(f"| {shape} | {cells[0]} | {cells[1]} |")
    return out


def summary_line(path: pathlib.Path) -> str:
    result = json.loads(path.read_text())
    s = result["summary"]
    settings = s.get("settings") or {}
    stars = (s.get("shape_accuracy_by_shape") or {}).get("star", "-")
    ceiling = (s.get("vae_ceiling_shape_accuracy_by_shape") or {}).get("star", "-")
    return (
        f"{path.name}: colour {s['colour_accuracy']:.0%} shape {s['shape_accuracy']:.0%} "
        f"motion {s['motion_accuracy']:.0%} | stars {stars.replace(' ', '')} "
        f"({_per_size(s.get('shape_accuracy_by_shape_and_size'), 'star')}) "
        f"| {_misses(result.get('videos', []))} "
        f"| {_partly(result.get('videos', []))} "
        f"| VAE stars {ceiling.replace(' ', '')} "
        f"({_per_size(s.get('vae_ceiling_shape_accuracy_by_shape_and_size'), 'star')}"
        + (
            f", {_misses(result['videos'], 'vae_read')}"
            if any("vae_read" in v for v in result.get("videos", []))
            else ""
        )
        + ") "
        f"| {settings.get('sampler', '?')} {settings.get('steps', '?')} steps, guidance {settings.get('guidance')}"
        + (f" | {run}" if (run := _training(path.parent / _log_name(path))) else "")
    )


def shape_table(paths: list[pathlib.Path]) -> list[str]:
    """The ``--shapes`` table (markdown) over the prompt objects of every file."""
    rows: dict[tuple[str, str], list[tuple[bool, float | None, float | None, str | None]]] = {}
    for path in paths:
        for video in json.loads(path.read_text())["videos"]:
            for obj in video.get("read", []):
                asked, got = obj["asked"], obj["got"]
                scores = (got or {}).get("shape_scores") or {}
                rows.setdefault((asked["shape"], asked["size"]), []).append(
                    (
                        got is not None and got["shape"] == asked["shape"],
                        scores.get(asked["shape"]),
                        max(scores.values()) if scores else None,
                        got["shape"] if got else None,
                    )
                )

    def median(values: list[float | None]) -> str:
        kept = [v for v in values if v is not None]
        return f"{statistics.median(kept):.2f}" if kept else "-"

    out = [
        "| asked shape, size | read right | median score of the asked shape | median best score | misses read as |",
        "|---|---:|---:|---:|---|",
    ]
    order = {s: i for i, s in enumerate(SIZES)}
    for (shape, size), entries in sorted(rows.items(), key=lambda kv: (kv[0][0], order.get(kv[0][1], 9))):
        right = sum(e[0] for e in entries)
        missed = _ranked([e[3] for e in entries if not e[0]])
        out.append(
            f"| {shape}, {size} | {right} / {len(entries)} ({right / len(entries):.0%}) | "
            f"{median([e[1] for e in entries])} | {median([e[2] for e in entries])} | {missed or '-'} |"
        )
    return out


def _log_name(path: pathlib.Path) -> str:
    """``log_<arm>.txt`` for ``eval_dit_<arm>.json`` and ``eval_dit_<arm>_x<k>.json``."""
    arm = re.sub(r"_x\d+$", "", path.stem.removeprefix("eval_dit_"))
    return f"log_{arm}.txt"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", type=pathlib.Path, help="eval_dit JSON files")
    parser.add_argument(
        "--shapes",
        action="store_true",
        help="one table pooled over the files: shape reads per asked shape, size",
    )
    parser.add_argument(
        "--visibility",
        action="store_true",
        help="one table pooled over the files: shape reads of objects partly visible throughout, and of the rest",
    )
    args = parser.parse_args(argv)
    if args.visibility:
        print("\n".join(visibility_table(args.files)))
        return 0
    if args.shapes:
        print("\n".join(shape_table(args.files)))
        return 0
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
