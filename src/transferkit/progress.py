"""Progress of the long passes over data: a bar on a terminal, a line per stage elsewhere.

A pass over data (checking an image folder, predicting, evaluating, checking
an export) reports on stderr, so that what a command prints on stdout stays
data: on a terminal, once the pass has run `DELAY` seconds, a bar with the
count, the rate and the time left, redrawn as it goes and left as one summary
line; elsewhere (a log file, CI, a pipe) that summary line alone, for passes
that took `DELAY` seconds or more. `quiet()` turns it off for a block: the
command line's `--quiet` runs the command inside it.

Example:

>>> with Progress(len(files), "Checking images", unit="images") as progress:  # doctest: +SKIP
...     for file in files:
...         check(file)
...         progress.update(1)
Checking images: 2,000 images in 12.1 s (165.3/s)
"""

import contextlib
import contextvars
import math
import sys
import time

DELAY = 2.0  # seconds a pass runs before it shows: shorter ones print nothing
_WIDTH = 24  # characters of the bar
_QUIET = contextvars.ContextVar("transferkit_quiet", default=False)


@contextlib.contextmanager
def quiet(on=True):
    """Inside the block, `Progress` prints nothing (when `on`)."""
    token = _QUIET.set(bool(on))
    try:
        yield
    finally:
        _QUIET.reset(token)


def is_quiet():
    """Whether the current block is inside `quiet()`."""
    return _QUIET.get()


class Progress:
    """Counts a pass over `total` items and shows it (see the module's docstring).

    Args:
        total: the items the pass goes over.
        label: what the pass does, e.g. `"Predicting"`.
        unit: what an item is, e.g. `"images"`. Defaults to `"items"`.
        stream: where to write. Defaults to `sys.stderr` (looked up when made).
        delay: seconds before anything shows. Defaults to `DELAY`.
    """

    def __init__(self, total, label, *, unit="items", stream=None, delay=DELAY):
        self.total = int(total)
        self.label = label
        self.unit = unit
        self.stream = sys.stderr if stream is None else stream
        self.delay = delay
        self.done = 0
        self.quiet = is_quiet()
        self.terminal = bool(getattr(self.stream, "isatty", lambda: False)())
        self._start = time.perf_counter()
        self._drawn_at = None

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback):
        if kind is None:
            self.close()
        elif self._drawn_at is not None:
            self.stream.write("\n")  # the error's message on a line of its own
            self.stream.flush()

    def update(self, count=1):
        """Adds `count` items done; redraws the bar at most ten times a second."""
        self.done += count
        if self.quiet or not self.terminal:
            return
        now = time.perf_counter()
        if now - self._start < self.delay or (
                self._drawn_at is not None and now - self._drawn_at < 0.1):
            return
        self._drawn_at = now
        rate = self.done / (now - self._start)
        left = (self.total - self.done) / rate if rate > 0 else math.inf
        filled = min(_WIDTH, _WIDTH * self.done // max(self.total, 1))
        self.stream.write(f"\r{self.label} [{'=' * filled}{'.' * (_WIDTH - filled)}] "
                          f"{self.done:,}/{self.total:,} {self.unit}, {rate:.1f}/s, "
                          f"{_duration(left)} left\x1b[K")
        self.stream.flush()

    def close(self):
        """Writes the summary line, if the pass showed (or, off a terminal, took `delay`)."""
        if self.quiet:
            return
        seconds = time.perf_counter() - self._start
        if self._drawn_at is None and (self.terminal or seconds < self.delay):
            return  # (a delay of `math.inf` shows nothing)
        rate = self.done / seconds if seconds > 0 else 0.0
        self.stream.write(f"{chr(13) if self._drawn_at is not None else ''}{self.label}: "
                          f"{self.done:,} {self.unit} in {seconds:.1f} s ({rate:.1f}/s)"
                          f"{chr(27) + '[K' if self._drawn_at is not None else ''}\n")
        self.stream.flush()


def _duration(seconds):
    if not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}" if seconds >= 60 else f"{seconds} s"
