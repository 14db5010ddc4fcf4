"""The DiT trainer's batches from a latent dataset that an encode beside it may still be writing.

A trainer started beside the encode (``train.wait_for_latents_s``) with ``train.start_with_parts = N`` trains
once N part files are finished, on those parts and the statistics of their clips
(:func:`~jaxsora.data.latents.finished_view`), instead of waiting for the whole dataset. Every ``POLL_S``
seconds the feed looks at the dataset again; when the finished parts are at least twice those it reads (or the
encode has ended), a pipeline over all of them is built and its first batch pulled in a background thread while
training goes on, and the next step takes its batches, and its normalising statistics, from the new pipeline
(which starts a new epoch). Doubling bounds the pipelines built (their worker processes start on host cores the
encode uses too) to about log2 of the parts.
The view a checkpoint's iterator state belongs to is saved with it (:meth:`LatentView.record`), so a run
resumed from a checkpoint reads the same clips in the same order, and grows from there.
"""

from __future__ import annotations

import concurrent.futures
import logging
import pathlib
import time
from collections.abc import Callable, Iterator

from jaxsora.data.latents import LatentView, finished_view
from jaxsora.data.pipeline import close_iterator

log = logging.getLogger(__name__)

POLL_S = 2.0  # how often a feed on a growing dataset looks for newly finished parts


class LatentFeed:
    """Batches over ``view`` of the latent dataset in ``folder`` (``make_iterator(view)`` builds the pipeline),
    taking in the parts an encode finishes later while ``view`` is not complete."""

    def __init__(
        self, folder: str | pathlib.Path, view: LatentView, make_iterator: Callable[[LatentView], Iterator]
    ):
        self.folder = folder
        self.view = view
        self._make_iterator = make_iterator
        self.iterator = make_iterator(view)  # the iterator whose state a checkpoint saves
        self._first = None  # the first batch of a pipeline just swapped in, pulled when it was built
        self._pending: concurrent.futures.Future | None = None
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="latent-feed")
        self._next_poll = time.monotonic() + POLL_S
        self.views_taken = 1

    def __iter__(self):
        return self

    def __next__(self):
        if self._first is not None:
            batch, self._first = self._first, None
            return batch
        return next(self.iterator)

    def _build(self, view: LatentView):
        iterator = self._make_iterator(view)
        return iterator, next(iterator), view

    def take_new_parts(self) -> bool:
        """Called before each batch is drawn: swaps in the pipeline over a larger view once it is built (True:
        ``view`` and its statistics changed), and otherwise, every ``POLL_S`` seconds, starts building one when
        the encode has ended or finished twice the parts read now."""
        if self._pending is not None:
            if not self._pending.done():
                return False
            iterator, first, view = self._pending.result()  # a failed build fails the run here
            self._pending = None
            old, self.iterator, self._first, self.view = self.iterator, iterator, first, view
            self.views_taken += 1
            self._pool.submit(_close_quietly, old)  # its worker processes end off the training thread
            return True
        if self.view.complete or time.monotonic() < self._next_poll:
            return False
        self._next_poll = time.monotonic() + POLL_S
        view = finished_view(self.folder)
        if view is not None and (view.complete or len(view.files) >= 2 * len(self.view.files)):
            self._pending = self._pool.submit(self._build, view)
        return False

    def close(self) -> None:
        if self._pending is not None:  # a pipeline being built: let it finish, then end it too
            try:
                iterator, _, _ = self._pending.result()
                _close_quietly(iterator)
            except Exception as e:  # the run is ending anyway
                log.warning("building the latent pipeline over newly finished parts failed: %r", e)
        self._pool.shutdown(wait=True)
        close_iterator(self.iterator)


def _close_quietly(iterator) -> None:
    """Ends a pipeline swapped out (its worker processes); a failure is logged, not raised: training goes on.
    Not :func:`close_iterator`, which also makes every later shared-memory release synchronous: right when a
    program ends (:meth:`LatentFeed.close`), not while the next pipeline is feeding the steps."""
    close = getattr(iterator, "close", None)
    try:
        if close is not None:
            close()
    except Exception as e:
        log.warning("closing a latent pipeline swapped out failed: %r", e)
