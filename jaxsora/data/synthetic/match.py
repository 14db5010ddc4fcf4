"""Scoring described objects against ground truth or a prompt's attributes.

``match(describe(video), meta["objects"])`` is how the synthetic world evaluates itself (the acceptance
test), and how generated videos are scored against the attributes their prompt asked for: pass a list of
dicts naming whichever attributes the prompt fixes (``{"colour": "red", "shape": "circle", "motion":
"right"}``) and read per-attribute accuracies.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Iterable, Sequence
from typing import Any

from jaxsora.data.synthetic.describe import ATTRIBUTES, ObjectDescription


@dataclasses.dataclass
class MatchResult:
    """Agreement between described objects and ground-truth (or prompt) objects."""

    pairs: list[tuple[int, int | None]]  # (truth index, described index or None when missed)
    correct: dict[str, int]
    total: dict[str, int]
    missing: int  # truth objects with no described object
    extra: int  # described objects matched to no truth object

    @property
    def accuracy(self) -> dict[str, float]:
        return {a: self.correct[a] / self.total[a] for a in self.total if self.total[a]}


def _agree(attribute: str, truth: dict[str, Any], obj: ObjectDescription | None) -> bool | None:
    """Whether ``obj`` agrees with ``truth`` on ``attribute``; None when the truth does not say."""
    value = truth.get(attribute)
    if value is None:
        return None
    return obj is not None and getattr(obj, attribute) == value


def match(
    described: Sequence[ObjectDescription],
    truth: Iterable[dict[str, Any]],
    attributes: Sequence[str] = ATTRIBUTES,
    *,
    single_frame: bool = False,
) -> MatchResult:
    """Pairs truth objects (window ``meta["objects"]`` entries, or any dicts naming some of
    :data:`ATTRIBUTES`, e.g. parsed from a prompt) with described objects so that the total number of agreeing
    attributes is largest (colour counts double, being what identifies an object), then counts agreements.

    Truth objects with ``status == "absent"`` are skipped; an attribute a truth object leaves out or sets to
    None (a still object's speed) is not scored; a missed object counts as wrong on every attribute it has.
    Leave "speed" out of ``attributes`` when ``describe`` ran without fps; ``single_frame`` drops motion and
    speed (a single frame shows neither).
    """
    truth = [t for t in truth if t.get("status") != "absent"]
    if single_frame:
        attributes = [a for a in attributes if a not in ("motion", "speed")]
    weights = {a: (2.0 if a == "colour" else 1.0) for a in attributes}

    def score(t: dict[str, Any], d: ObjectDescription | None) -> float:
        return sum(weights[a] for a in attributes if _agree(a, t, d))

    n, m = len(truth), len(described)
    best_pairs: list[tuple[int, int | None]] = [(i, None) for i in range(n)]
    if n and m:
        best = -1.0
        # Exhaustive over injective assignments for the handful of objects a clip has; greedy beyond.
        if math.perm(max(n, m), min(n, m)) <= 50_000:
            slots = list(range(m)) + [None] * n
            for perm in itertools.permutations(slots, n):
                if len({p for p in perm if p is not None}) != sum(p is not None for p in perm):
                    continue
                s = sum(score(truth[i], described[j] if j is not None else None) for i, j in enumerate(perm))
                if s > best:
                    best, best_pairs = s, list(enumerate(perm))
        else:
            free = set(range(m))
            for i in range(n):
                j = max(free, key=lambda j: score(truth[i], described[j]), default=None)
                if j is not None:
                    free.discard(j)
                best_pairs[i] = (i, j)
    correct = {a: 0 for a in attributes}
    total = {a: 0 for a in attributes}
    for i, j in best_pairs:
        for a in attributes:
            agree = _agree(a, truth[i], described[j] if j is not None else None)
            if agree is not None:
                total[a] += 1
                correct[a] += int(agree)
    matched = {j for _, j in best_pairs if j is not None}
    missing = sum(j is None for _, j in best_pairs)
    return MatchResult(best_pairs, correct, total, missing, m - len(matched))
