"""A contact sheet of scored samples: one tile per generated video (its middle frame) with what the prompt
asked for each object and what ``describe`` read, so a run's misses can be looked at, not only counted.

Each label line is one prompt object: ``<size> <colour> <shape>`` in green when the shape was read right, or
followed by ``-> <shape read>`` in red (``-> none`` when no object was matched to it); a mover whose direction
was misread adds ``, <asked> -> <read>``. ``eval-dit`` writes it as ``eval_dit/sheet.png``.
"""

from __future__ import annotations

import pathlib

import numpy as np

RIGHT = (40, 160, 60)
WRONG = (200, 40, 40)
LINE = 11  # pixels per label line (Pillow's default bitmap font is 11 px tall)
MAX_LABEL_WIDTH = 320  # pixels; longer labels are cut by the next tile


def label_lines(read: list[dict]) -> list[tuple[str, tuple[int, int, int]]]:
    """(text, colour) per prompt object of one video's ``read`` entries (``score``'s details)."""
    lines = []
    for obj in read:
        asked, got = obj["asked"], obj["got"]
        text = f"{(asked.get('size') or '?')[0]} {asked.get('colour')} {asked.get('shape')}"
        right = got is not None and got.get("shape") == asked.get("shape")
        if not right:
            text += f" -> {got['shape'] if got else 'none'}"
        motion = asked.get("motion")
        if got is not None and motion and motion != "still" and got.get("motion") != motion:
            text += f", {motion} -> {got.get('motion')}"
        lines.append((text, RIGHT if right else WRONG))
    return lines


def contact_sheet(frames: list[np.ndarray], reads: list[list[dict]], columns: int = 8):
    """A PIL image: ``frames[i]`` (uint8 ``[H, W, 3]``, any size) in tile i, its labels from ``reads[i]``
    below it; tiles in rows of ``columns``, each as large as the largest frame and its labels need."""
    from PIL import Image, ImageDraw, ImageFont

    if len(frames) != len(reads):
        raise ValueError(f"{len(frames)} frames but {len(reads)} reads")
    if not frames:
        raise ValueError("no frames for a contact sheet")
    font = ImageFont.load_default()
    labels = [label_lines(r) for r in reads]
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    text_w = max((measure.textlength(t, font=font) for lines in labels for t, _ in lines), default=0)
    tile_h = max(f.shape[0] for f in frames) + LINE * max(1, max(len(lines) for lines in labels)) + 4
    tile_w = max(min(int(text_w) + 1, MAX_LABEL_WIDTH), max(f.shape[1] for f in frames)) + 6
    columns = min(columns, len(frames))
    rows = -(-len(frames) // columns)
    sheet = Image.new("RGB", (columns * tile_w, rows * tile_h), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for i, (frame, lines) in enumerate(zip(frames, labels, strict=True)):
        x, y = (i % columns) * tile_w, (i // columns) * tile_h
        sheet.paste(Image.fromarray(np.asarray(frame, np.uint8)), (x, y))
        for k, (text, colour) in enumerate(lines):
            draw.text((x, y + frame.shape[0] + 2 + k * LINE), text, fill=colour, font=font)
    return sheet


def write_contact_sheet(path: str | pathlib.Path, frames: list[np.ndarray], reads: list[list[dict]]) -> None:
    contact_sheet(frames, reads).save(path, optimize=True)
