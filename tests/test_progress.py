"""jaxsora.progress: bars written to a log redraw rarely; in a terminal as tqdm does."""

import io
import sys

from jaxsora import progress


def redraws(bar_kwargs, n=300, **env) -> int:
    out = io.StringIO()  # not a terminal: what a job's log file or a pipe gets
    bar = progress.progress_bar(total=n, file=out, **bar_kwargs)
    for _ in range(n):
        bar.update(1)
    bar.close()
    return out.getvalue().count("\r")


def test_a_bar_written_to_a_log_redraws_at_most_every_interval(monkeypatch):
    monkeypatch.delenv("TQDM_MININTERVAL", raising=False)
    # 300 quick updates: the first draw and the last, nothing between (tqdm's default gave one per update)
    assert redraws({}) <= 3
    assert redraws({"mininterval": 0, "miniters": 1}) >= 300  # the caller's own setting wins


def test_tqdms_environment_variable_still_decides(monkeypatch):
    monkeypatch.setenv("TQDM_MININTERVAL", "0")
    bar = progress.progress_bar(total=3, file=io.StringIO())
    assert bar.mininterval != progress.LOG_INTERVAL_S
    bar.close()


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_bar_in_a_terminal_or_a_notebook_keeps_tqdms_defaults(monkeypatch):
    monkeypatch.delenv("TQDM_MININTERVAL", raising=False)
    assert not progress.writes_to_a_log(_Terminal())
    bar = progress.progress_bar(total=3, file=_Terminal())
    assert bar.mininterval == 0.1
    bar.close()
    monkeypatch.setitem(
        sys.modules, "ipykernel", object()
    )  # a Jupyter / Colab kernel: its cell shows the bar
    assert not progress.writes_to_a_log(io.StringIO())
