"""Progress of a long command-line job, with an ETA, whether or not anyone watches a terminal.

On a terminal: a tqdm bar (it shows the rate and the time left). Otherwise (a log file, a
pipe, a worker started by the app): a plain line every ``every_s`` seconds, e.g.

    IWAE k=1000: 300 of 10,000 test images (3%), 12 s, about 6 min left

and one at the end; nothing at all for a job shorter than ``every_s`` (5 s, or
$LATENT_EXPLORER_PROGRESS_EVERY_S). The CLI's dataset
decoding and ``eval`` use it. No streamlit here: the app draws its own progress.
"""
from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import Self, TextIO

DEFAULT_EVERY_S = 5.0
EVERY_ENV = "LATENT_EXPLORER_PROGRESS_EVERY_S"  # seconds between plain lines, when set (tests set it small)


def format_seconds(s: float) -> str:
    """A duration the way a person says it: '12 s', '6 min', '1 h 05 min'."""
    s = max(0.0, float(s))
    if s < 90:
        return f"{s:.0f} s"
    if s < 90 * 60:
        return f"{s / 60:.0f} min"
    h, m = divmod(round(s / 60), 60)
    return f"{h} h {m:02d} min"


class Progress:
    """Called as ``progress(done, total)``; ``close()`` ends it (or use it as a context manager).

    desc: what is being done ("decoding mnist"); unit: what is counted, shown after the total
    in the plain lines ("test images") and as the bar's unit. The clock starts at ``start()``
    or at the first call, whichever comes first; the time left is the time so far scaled by
    the work left (shown once some work is done, and not on the last line).
    """

    def __init__(self, desc: str, unit: str = "", every_s: float | None = None, stream: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic, bar_unit: str = "img"):
        if every_s is None:
            every_s = float(os.environ.get(EVERY_ENV) or DEFAULT_EVERY_S)
        self.desc, self.unit, self.every_s, self.clock = desc, unit, every_s, clock
        self.bar_unit = bar_unit
        self.stream = stream if stream is not None else sys.stderr
        self.bar = None
        self.last = 0.0
        self.started: float | None = None
        self.done, self.total = 0, 0

    def _tty(self) -> bool:
        isatty = getattr(self.stream, "isatty", None)
        try:
            return bool(isatty and isatty())
        except ValueError:  # a closed stream
            return False

    def start(self, total: int | None = None, now: float | None = None) -> Progress:
        """Start the clock now (and the bar, with ``total`` known)."""
        if self.started is None:
            self.started = self.clock() if now is None else now
            if self._tty():
                try:
                    from tqdm import tqdm

                    self.bar = tqdm(total=total, desc=self.desc, unit=self.bar_unit, dynamic_ncols=True,
                                    file=self.stream)
                except ImportError:
                    pass
        return self

    def __call__(self, done: int, total: int) -> None:
        now = self.clock()
        self.start(total, now)
        self.done, self.total = done, total
        if self.bar is not None:
            self.bar.total = total
            self.bar.update(done - self.bar.n)
        elif min(now - self.started, now - self.last) >= self.every_s or (done >= total and self.last):
            self.last = now  # quiet for a job shorter than every_s
            self.write(self.line(done, total, now))

    def line(self, done: int, total: int, now: float | None = None) -> str:
        """The plain progress line for ``done`` of ``total``."""
        now = self.clock() if now is None else now
        spent = now - (self.started if self.started is not None else now)
        unit = f" {self.unit}" if self.unit else ""
        pct = f" ({100 * done / total:.0f}%)" if total else ""
        left = ""
        if 0 < done < total:
            left = f", about {format_seconds(spent * (total - done) / done)} left"
        return f"{self.desc}: {done:,} of {total:,}{unit}{pct}, {format_seconds(spent)}{left}"

    def write(self, message: str) -> None:
        """A line of its own (above the bar on a terminal)."""
        if self.bar is not None:
            self.bar.write(message, file=self.stream)
        else:
            print(message, file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
