"""Progress bars for every long loop (training, encoding, evaluation), one setting for all of them.

In a terminal or a notebook a bar redraws as tqdm does by default (at most 10 times a second). Written to a
file or a pipe (a job's log, a device call's output, CI) each redraw stays in the log: a GPU recipe's log held
800-1,300 redraws for each training stage of 130-200 s. There a bar redraws at most every
``LOG_INTERVAL_S`` seconds, and once more when it closes. tqdm's own ``TQDM_MININTERVAL`` environment
variable, or a ``mininterval`` argument, still decides where given.
"""

from __future__ import annotations

import os
import sys

from tqdm import tqdm

LOG_INTERVAL_S = 30.0


def writes_to_a_log(file=None) -> bool:
    """Whether a bar on ``file`` (default stderr, tqdm's) goes to a file or pipe rather than to a terminal
    or a notebook (whose output cell shows a bar as a terminal does)."""
    stream = sys.stderr if file is None else file
    isatty = getattr(stream, "isatty", None)
    if isatty is not None and isatty():
        return False
    return "ipykernel" not in sys.modules


def progress_bar(iterable=None, **kwargs) -> tqdm:
    """``tqdm(iterable, **kwargs)``, redrawn at most every LOG_INTERVAL_S seconds when it writes to a log."""
    if (
        "mininterval" not in kwargs
        and "TQDM_MININTERVAL" not in os.environ
        and writes_to_a_log(kwargs.get("file"))
    ):
        kwargs["mininterval"] = LOG_INTERVAL_S
        kwargs.setdefault("maxinterval", LOG_INTERVAL_S)
    return tqdm(iterable, **kwargs)
