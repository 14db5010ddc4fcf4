"""Scoring a video against its prompt's objects with the synthetic world's ``describe`` (numpy only, no jax), and
a pool of worker processes that does it beside the generation: ``describe`` is single-threaded host work (~70 ms
a 17-frame 128x128 clip on the development machine, experiments/synthetic/score_time.py), which an evaluation of
64 prompts and their VAE round trips otherwise runs one after another on one core."""

from __future__ import annotations

import concurrent.futures
import concurrent.futures.process
import logging
import multiprocessing
import os

import numpy as np

from jaxsora.data.synthetic import describe, match, vocab

log = logging.getLogger(__name__)

DIRECTIONS = set(vocab.DIRECTIONS)
READ_ATTRIBUTES = ("colour", "shape", "size", "motion")  # what eval_dit.json keeps per prompt object


def read_entry(truth: dict, obj, attributes: tuple[str, ...]) -> dict:
    """One prompt object's ``{"asked": ..., "got": ...}`` over ``attributes``: what the prompt asked and what
    ``describe`` read for the object matched to it (``got`` is None when none was). ``got`` also keeps the
    evidence: the object's coverage area per frame (pixels; None where absent) and its per-shape scores, which
    say whether a shape or motion miss is a near miss, a drift over the frames or one bad frame."""
    asked = {a: truth.get(a) for a in attributes}
    if "status" in truth:  # stays, enters, leaves, crosses or partial (never wholly in the frame)
        asked["status"] = truth["status"]
    if obj is None:
        return {"asked": asked, "got": None}
    got = {a: getattr(obj, a) for a in attributes}
    got["areas"] = [None if not np.isfinite(a) else round(float(a), 1) for a in obj.areas]
    got["shape_scores"] = {k: round(float(v), 3) for k, v in obj.shape_scores.items()}
    if obj.frame_shape_scores is not None:
        got["frame_shape_scores"] = [
            None if f is None else {k: round(float(v), 3) for k, v in f.items()}
            for f in obj.frame_shape_scores
        ]
    return {"asked": asked, "got": got}


def score(video: np.ndarray, item: dict, details: list | None = None) -> dict:
    """Colour/shape/motion agreement of one generated video with its prompt's objects; with ``details``, one
    entry per prompt object is appended: what the prompt asked and what ``describe`` read for it (None when
    no object was matched to it)."""
    described = describe(video, frame_scores=details is not None)
    truth = [o for o in item["objects"] if o.get("status") != "absent"]
    result = match(described, truth, ("colour", "shape", "motion"))
    counts = {"objects": len(truth), "colour": 0, "shape": 0, "colour_and_shape": 0, "moving": 0, "motion": 0}
    for i, j in result.pairs:
        obj = described[j] if j is not None else None
        t = truth[i]
        colour = obj is not None and obj.colour == t["colour"]
        shape = obj is not None and obj.shape == t["shape"]
        counts["colour"] += colour
        counts["shape"] += shape
        counts["colour_and_shape"] += colour and shape
        if t["motion"] in DIRECTIONS:
            counts["moving"] += 1
            counts["motion"] += obj is not None and obj.motion == t["motion"]
        if details is not None:
            details.append(read_entry(t, obj, READ_ATTRIBUTES))
    return counts


def score_with_reads(video: np.ndarray, objects: list[dict]) -> tuple[dict, list[dict]]:
    """:func:`score` of ``video`` against prompt ``objects``, returning the per-object reads beside the counts
    (what a worker process sends back)."""
    reads: list[dict] = []
    return score(video, {"objects": objects}, reads), reads


class ScorePool:
    """``submit(video, objects)`` -> a job whose ``result()`` is :func:`score_with_reads`, computed in ``workers``
    spawned processes (0: in this process, as each is submitted). Spawned, not forked: the caller has jax (and
    a GPU) initialised, which a fork would copy. Where worker processes cannot start (a ``__main__`` that a
    spawned process cannot import, such as a script piped to ``python -``), the jobs are scored here instead,
    with a warning. Results do not depend on the worker count."""

    def __init__(self, workers: int | None = None):
        if workers is None:
            workers = default_workers()
        self.workers = max(int(workers), 0)
        self._pool = None
        if self.workers:
            context = multiprocessing.get_context("spawn")
            self._pool = concurrent.futures.ProcessPoolExecutor(self.workers, mp_context=context)

    def submit(self, video: np.ndarray, objects: list[dict]) -> ScoreJob:
        video = np.asarray(video)
        if self._pool is not None:
            try:
                return ScoreJob(self, video, objects, self._pool.submit(score_with_reads, video, objects))
            except concurrent.futures.process.BrokenProcessPool:
                self._broken()
        return ScoreJob(self, video, objects, None)

    def _broken(self) -> None:
        if self._pool is not None:
            log.warning("the scoring processes could not run; scoring in this process instead")
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> ScorePool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class ScoreJob:
    """One video's scoring: in a worker process (``future``) or, without one, here when asked."""

    def __init__(self, pool: ScorePool, video: np.ndarray, objects: list[dict], future):
        self._pool, self._video, self._objects, self._future = pool, video, objects, future
        self._result = None if future is not None else score_with_reads(video, objects)

    def result(self) -> tuple[dict, list[dict]]:
        if self._result is None:
            try:
                self._result = self._future.result()
            except concurrent.futures.process.BrokenProcessPool:
                self._pool._broken()
                self._result = score_with_reads(self._video, self._objects)
        self._video = None  # the video is not needed any more
        return self._result


def default_workers() -> int:
    """Up to 8 processes, leaving a core to the caller; none on a machine of 2 cores or fewer."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return 0 if cores <= 2 else min(8, cores - 1)
