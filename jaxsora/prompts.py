"""Prompt expansion: short user prompts rewritten into the descriptive caption style used in training.

The report rewrites prompts with a large language model; here a :class:`PromptExpander` is any callable
``str -> str``. Two come with jaxsora:

- :class:`SyntheticWorldExpander`: rule-based, for the synthetic world's vocabulary. It reads colours, shapes,
  sizes, directions, speeds and a background colour out of a short prompt ("a red circle going left") and
  writes the caption the world itself would write for such a clip ("A medium red circle moves slowly left, on a
  grey background."), filling what the prompt leaves out with the most common choice.
- :class:`CallableExpander`: wraps any function (an LLM client, a lookup table) and checks what it returns.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Protocol

from jaxsora.data.synthetic import vocab
from jaxsora.data.synthetic.captions import descriptive_caption


class PromptExpander(Protocol):
    def __call__(self, prompt: str) -> str: ...


class CallableExpander:
    """Any ``prompt -> caption`` function as an expander (e.g. a call to an LLM with a rewriting instruction)."""

    def __init__(self, fn: Callable[[str], str]):
        self.fn = fn

    def __call__(self, prompt: str) -> str:
        out = self.fn(prompt)
        if not isinstance(out, str) or not out.strip():
            raise ValueError(
                f"the prompt expander returned {out!r} for {prompt!r}: expected a non-empty string"
            )
        return out.strip()


_DIRECTION_WORDS = [  # longest first, so "up and left" wins over "up"
    (r"up(?:wards)?[ -]+(?:and[ -]+)?(?:to the )?left", "up-left"),
    (r"up(?:wards)?[ -]+(?:and[ -]+)?(?:to the )?right", "up-right"),
    (r"down(?:wards)?[ -]+(?:and[ -]+)?(?:to the )?left", "down-left"),
    (r"down(?:wards)?[ -]+(?:and[ -]+)?(?:to the )?right", "down-right"),
    (r"(?:to the )?left(?:wards)?", "left"),
    (r"(?:to the )?right(?:wards)?", "right"),
    (r"up(?:wards)?|rising|rises", "up"),
    (r"down(?:wards)?|falling|falls", "down"),
    (r"still|static|not moving|motionless|rests", "still"),
    (r"grow(?:s|ing)?|expand(?:s|ing)?", "grow"),
    (r"shrink(?:s|ing)?|contract(?:s|ing)?", "shrink"),
]
_SPEED_WORDS = {"slow": r"slow(?:ly)?|gentl[ey]|drift", "fast": r"fast|quick(?:ly)?|rush|dart"}
_COLOUR_RE = "|".join(sorted(map(re.escape, vocab.COLOUR_NAMES), key=len, reverse=True))
_SHAPE_RE = "|".join(vocab.SHAPES)
_BACKGROUND_RE = "|".join(sorted(map(re.escape, vocab.BACKGROUND_NAMES), key=len, reverse=True))


class SyntheticWorldExpander:
    """Short prompt -> the synthetic world's descriptive caption (see the module docstring)."""

    def __init__(self, default_background: str = "grey", min_length: int = 200):
        if default_background not in vocab.BACKGROUND_COLOURS:
            raise ValueError(
                f"unknown background colour {default_background!r}; use one of {vocab.BACKGROUND_NAMES}"
            )
        self.default_background = default_background
        self.min_length = min_length

    def parse(self, prompt: str) -> dict:
        """The objects and background a prompt names (a window-metadata-like dict)."""
        text = prompt.lower()
        background = self.default_background
        m = re.search(rf"\b({_BACKGROUND_RE})\s+(?:background|backdrop)", text)
        if m:
            background = m.group(1)
            text = text[: m.start()] + text[m.end() :]
        objects = []
        pattern = rf"\b(?:(small|medium|large|big|tiny)\s+)?({_COLOUR_RE})\s+({_SHAPE_RE})s?\b"
        matches = list(re.finditer(pattern, text))
        for i, m in enumerate(matches):
            clause = text[m.end() : matches[i + 1].start() if i + 1 < len(matches) else len(text)]
            size = {"big": "large", "tiny": "small"}.get(m.group(1) or "medium", m.group(1) or "medium")
            motion = next(
                (name for rx, name in _DIRECTION_WORDS if re.search(rf"\b(?:{rx})\b", clause)), "still"
            )
            speed = next(
                (name for name, rx in _SPEED_WORDS.items() if re.search(rf"\b(?:{rx})", clause)), "slow"
            )
            objects.append(
                {
                    "shape": m.group(3),
                    "colour": m.group(2),
                    "size": size,
                    "motion": motion,
                    "speed": speed,
                    "status": "stays",
                    "position": "centre",
                }
            )
        bg = {
            "kind": "solid",
            "colour0": background,
            "colour1": background,
            "direction": None,
            "panning": False,
        }
        return {"background": bg, "objects": objects, "num_frames": 17}

    def __call__(self, prompt: str) -> str:
        if len(prompt) >= self.min_length:  # already descriptive
            return prompt.strip()
        meta = self.parse(prompt)
        if not meta["objects"]:
            return prompt.strip()  # nothing the world's vocabulary knows: leave it as the user wrote it
        return descriptive_caption(meta)
