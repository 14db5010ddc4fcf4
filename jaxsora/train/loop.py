"""What every training loop shares: preemption handling and the progress bar with throughput."""

from __future__ import annotations

import signal
import time

from tqdm import tqdm


class PreemptionGuard:
    """Turns SIGTERM (and SIGINT) into a flag the loop checks after each step, so it can save and exit."""

    def __init__(self):
        self.requested = False
        self._previous = {}

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def _handle(self, signum, frame):
        if self.requested and signum == signal.SIGINT:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        return False


class Progress:
    """A tqdm bar over steps that also reports examples/s and frames/s."""

    def __init__(self, total: int, initial: int, desc: str):
        self.bar = tqdm(total=total, initial=initial, desc=desc, unit="step", dynamic_ncols=True)
        self._t0 = time.perf_counter()
        self._clips = self._frames = 0

    def update(self, clips: int, frames: int, postfix: dict[str, float] | None = None) -> None:
        self._clips += clips
        self._frames += frames
        self.bar.update(1)
        if postfix:
            self.bar.set_postfix({k: f"{v:.4g}" for k, v in postfix.items()}, refresh=False)

    def rates(self) -> dict[str, float]:
        elapsed = max(time.perf_counter() - self._t0, 1e-9)
        rates = {"clips_per_s": self._clips / elapsed, "frames_per_s": self._frames / elapsed}
        self._t0, self._clips, self._frames = time.perf_counter(), 0, 0
        return rates

    def close(self) -> None:
        self.bar.close()
