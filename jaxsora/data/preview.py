"""`jaxsora data preview`: look at what the clip pipeline yields before training on it.

Writes a contact sheet (frames of each clip at its own aspect ratio, with its caption), a few clips as mp4
and gif, and returns the table of shape buckets (T, H, W) with their counts and batch sizes.
"""

from __future__ import annotations

import collections
import pathlib
import textwrap

import grain
import ml_collections
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from jaxsora.data.buckets import batch_size_for
from jaxsora.data.pipeline import clip_dataset, make_source
from jaxsora.progress import progress_bar

ROW_HEIGHT = 96
FRAMES_PER_ROW = 6
TEXT_WIDTH = 420


def contact_sheet(clips: list[dict]) -> Image.Image:
    """One row per clip: up to six evenly spaced frames scaled to a common height, then its caption."""
    font = ImageFont.load_default(size=12)
    strips = []
    for clip in clips:
        video = clip["video"]
        t, h, w = video.shape[:3]
        picks = np.unique(np.linspace(0, t - 1, min(t, FRAMES_PER_ROW)).round().astype(int))
        scaled_w = max(1, round(w * ROW_HEIGHT / h))
        strip = Image.new("RGB", (len(picks) * (scaled_w + 4), ROW_HEIGHT), "white")
        for k, i in enumerate(picks):
            strip.paste(
                Image.fromarray(video[i]).resize((scaled_w, ROW_HEIGHT), Image.NEAREST),
                (k * (scaled_w + 4), 0),
            )
        label = f"T x H x W = {t} x {h} x {w} @ {float(clip['fps']):g} fps\n" + "\n".join(
            textwrap.wrap(clip["caption"], width=64)[:5]
        )
        strips.append((strip, label))
    text_x = max(strip.width for strip, _ in strips) + 8
    sheet = Image.new("RGB", (text_x + TEXT_WIDTH, len(strips) * (ROW_HEIGHT + 8)), "white")
    draw = ImageDraw.Draw(sheet)
    for row, (strip, label) in enumerate(strips):
        top = row * (ROW_HEIGHT + 8) + 4
        sheet.paste(strip, (0, top))
        draw.multiline_text((text_x, top), label, fill="black", font=font, spacing=2)
    return sheet


def bucket_table(shapes: collections.Counter, data: ml_collections.ConfigDict) -> str:
    lines = [f"{'frames':>6} {'height':>6} {'width':>6} {'aspect':>7} {'clips':>6} {'batch':>6}"]
    for (t, h, w), count in sorted(shapes.items(), key=lambda kv: (-kv[1], kv[0])):
        batch = batch_size_for(
            (t, h, w),
            max_batch_pixels=data.max_batch_pixels,
            max_batch_size=data.max_batch_size,
            multiple=data.batch_multiple,
        )
        lines.append(f"{t:>6} {h:>6} {w:>6} {w / h:>7.2f} {count:>6} {batch:>6}")
    lines.append(f"{len(shapes)} buckets, {sum(shapes.values())} clips")
    return "\n".join(lines)


def preview(config: ml_collections.ConfigDict, out: pathlib.Path, num_clips: int, num_videos: int) -> str:
    from jaxsora.data import video_io

    out.mkdir(parents=True, exist_ok=True)
    source = make_source(config.data)
    ds = clip_dataset(source, config, shard_index=0, shard_count=1, num_epochs=1)
    it = iter(ds.to_iter_dataset(grain.ReadOptions(num_threads=max(config.data.num_threads, 1))))
    clips, shapes, skipped = [], collections.Counter(), []
    for element in progress_bar(it, total=min(num_clips, len(source)), desc="clips", unit="clip"):
        if "skipped" in element:
            skipped.append(element["skipped"])
            continue
        shapes[tuple(element["video"].shape[:3])] += 1
        if len(clips) < max(12, num_videos):
            clips.append(element)
        if sum(shapes.values()) >= num_clips:
            break
    if not clips:
        raise ValueError(f"the source yielded no readable clips ({len(skipped)} skipped)")
    contact_sheet(clips[:12]).save(out / "contact_sheet.png")
    videos = [c for c in clips if c["video"].shape[0] > 1][:num_videos]
    with open(out / "captions.txt", "w") as f:
        for k, clip in enumerate(videos):
            fps = float(clip["fps"])
            video_io.write_video(out / f"clip_{k}.mp4", clip["video"], fps)
            video_io.write_video(out / f"clip_{k}.gif", clip["video"], fps)
            f.write(f"clip_{k}: {clip['caption']}\n")
    table = bucket_table(shapes, config.data)
    (out / "buckets.txt").write_text(table + "\n")
    if skipped:
        table += f"\nskipped {len(skipped)} unreadable clips: {', '.join(skipped[:5])}"
    return table
