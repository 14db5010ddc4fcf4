"""Captions written from a window's metadata (:mod:`meta`), never from the native scene.

* the **short caption** is a user-style prompt naming the visible objects by colour and shape ("a red circle
  and a blue star");
* the **descriptive caption** says, for every visible object, its size, colour and shape, what it does in the
  window (direction and speed, still, growing, shrinking; entering, leaving, crossing or partly visible), and
  describes the background. One of five sentence templates and the verbs/adverbs are picked with the ``rng``
  given (the first of each when ``rng`` is None), so a clip gets varied phrasings across epochs but the same
  facts. A one-frame window says where each object is instead of how it moves.

Captions are kept compact: one object takes about 100 bytes, three about 200 (see the tests).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

DIRECTION_PHRASES = {
    "left": "left",
    "right": "right",
    "up": "up",
    "down": "down",
    "up-left": "up and left",
    "up-right": "up and right",
    "down-left": "down and left",
    "down-right": "down and right",
}
MOVE_VERBS = {"slow": ("moves", "drifts", "glides"), "fast": ("moves", "darts", "rushes")}
ADVERBS = {"slow": ("slowly", "gently"), "fast": ("quickly", "fast")}
STILL_PHRASES = ("stays still", "sits still", "rests", "does not move")
NUMBER_WORDS = ("No", "One", "Two", "Three", "Four", "Five")
NUM_TEMPLATES = 5


class _Picker:
    """Chooses among phrasings: the first without an rng, else a random one (deterministic in the rng)."""

    def __init__(self, rng: np.random.Generator | None):
        self.rng = rng

    def __call__(self, options: Sequence[str]) -> str:
        return options[0] if self.rng is None else options[int(self.rng.integers(len(options)))]

    def index(self, n: int) -> int:
        return 0 if self.rng is None else int(self.rng.integers(n))


def _article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def _join(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def visible_objects(meta: dict[str, Any]) -> list[dict[str, Any]]:
    return [o for o in meta["objects"] if o["status"] != "absent"]


def short_caption(meta: dict[str, Any]) -> str:
    objects = visible_objects(meta)
    if not objects:
        return f"an empty {_background_colours(meta['background'])} background"
    return _join([_article(f"{o['colour']} {o['shape']}") for o in objects])


def _background_colours(bg: dict[str, Any]) -> str:
    return bg["colour0"] if bg["kind"] == "solid" else f"{bg['colour0']} and {bg['colour1']}"


_GRADIENT_FROM = {
    "right": ("on the left", "on the right"),
    "left": ("on the right", "on the left"),
    "down": ("at the top", "at the bottom"),
    "up": ("at the bottom", "at the top"),
    "down-right": ("at the top left", "at the bottom right"),
    "down-left": ("at the top right", "at the bottom left"),
    "up-right": ("at the bottom left", "at the top right"),
    "up-left": ("at the bottom right", "at the top left"),
}


def background_phrase(bg: dict[str, Any], pick: _Picker) -> tuple[str, str]:
    """(noun phrase, predicate): ("a grey background", "plain grey"), ("a grey-to-sand gradient", ...)."""
    c0, c1 = bg["colour0"], bg["colour1"]
    if bg["kind"] == "solid":
        return pick((f"a {c0} background", f"a plain {c0} background")), f"plain {c0}"
    if bg["panning"]:
        noun = pick((f"a shifting {c0}-{c1} gradient", f"a drifting {c0} and {c1} gradient"))
        return noun, noun
    start, end = _GRADIENT_FROM[bg["direction"]]
    noun = pick((f"a {c0}-to-{c1} gradient", f"a gradient from {c0} {start} to {c1} {end}"))
    return noun, noun


def background_description(bg: dict[str, Any]) -> str:
    """The background in the fixed phrasing ("a dark grey background", "a sand-to-sage gradient", ...)."""
    return background_phrase(bg, _Picker(None))[0]


def _motion(o: dict[str, Any], pick: _Picker) -> str:
    motion, speed = o["motion"], o["speed"]
    if motion == "still":
        return pick(STILL_PHRASES)
    adverb = pick(ADVERBS[speed])
    if motion in ("grow", "shrink"):
        verb = "grows" if motion == "grow" else "shrinks"
        return pick((f"{adverb} {verb}", f"{verb} {adverb}"))
    return f"{pick(MOVE_VERBS[speed])} {adverb} {DIRECTION_PHRASES[motion]}"


def _at(side: str) -> str:
    """ "on the left", "at the top", "at the top right"."""
    return f"on the {side}" if side in ("left", "right") else f"at the {side}"


def predicate(o: dict[str, Any], single_frame: bool, pick: _Picker) -> str:
    """What the object does in the window (a verb phrase), or where it is (single frames)."""
    status = o["status"]
    if status == "partial":
        text = f"partly visible {_at(o['edge'] or o['position'])}"
        return text if single_frame else f"{_motion(o, pick)}, {text}"
    if single_frame:
        where = o["position"]
        if where == "centre":
            return pick(("in the centre", "in the middle"))
        return f"in the {where}" if " " in where else _at(where)
    clause = _motion(o, pick)
    if status == "enters":
        side = o["enters_from"]
        return pick((f"enters from the {side} and {clause}", f"{clause}, entering from the {side}"))
    if status == "leaves":
        return pick((f"{clause} and exits {_at(o['leaves_to'])}", f"{clause} out of the frame"))
    if status == "crosses":
        return f"{clause}, crossing from the {o['enters_from']} to the {o['leaves_to']}"
    return clause


def descriptive_caption(meta: dict[str, Any], rng: np.random.Generator | None = None) -> str:
    pick = _Picker(rng)
    template = pick.index(NUM_TEMPLATES)
    bg_noun, bg_pred = background_phrase(meta["background"], pick)
    objects = visible_objects(meta)
    if not objects:
        return _cap(f"{bg_noun}, with no shapes in view.")
    single = meta["num_frames"] == 1
    nouns = [_article(f"{o['size']} {o['colour']} {o['shape']}") for o in objects]
    preds = [predicate(o, single, pick) for o in objects]
    items = [f"{n} {p}" for n, p in zip(nouns, preds, strict=True)]
    count = NUMBER_WORDS[len(objects)] if len(objects) < len(NUMBER_WORDS) else str(len(objects))
    shapes = "shape" if len(objects) == 1 else "shapes"
    if template == 0:
        if single or len(items) == 1:
            return _cap(f"{_join(items)}, on {bg_noun}.")
        return _cap(f"{items[0]}, while {_join(items[1:])}, on {bg_noun}.")
    if template == 1:
        return _cap(f"on {bg_noun}{':' if single else ','} {_join(items)}.")
    if template == 2:
        verb = "is " if single else ""
        body = " ".join(_cap(f"{n} {verb}{p}.") for n, p in zip(nouns, preds, strict=True))
        return f"{body} The background is {bg_pred}."
    if template == 3:
        return _cap(f"{bg_noun}{' with' if single else ', where'} {_join(items)}.")
    return f"{count} {shapes} on {bg_noun}: {_join(items)}."
