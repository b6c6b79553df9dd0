"""A one-line progress counter for long loops (no dependency).

Drawn on stderr with a carriage return, at most ten times a second, and only
when asked for and stderr is a terminal: logs and CI output stay clean.

Example:
    >>> with Progress(total=300, label="calibrating", enabled=True) as bar:   # doctest: +SKIP
    ...     for batch in batches:
    ...         bar.update(len(batch))
"""
from __future__ import annotations

import sys
import time
from typing import Callable, TextIO

__all__ = ["Progress", "format_duration"]


def format_duration(seconds: float) -> str:
    """``75`` -> ``"1:15"``, ``3725`` -> ``"1:02:05"``."""
    total = max(0, int(round(seconds)))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Progress:
    """Counts done items and shows count, rate and ETA.

    Args:
        total: the number of items expected, or None when unknown (no ETA).
        label: what is being done, shown first.
        unit: what is counted.
        enabled: draw at all (the CLI's --progress); off means every call is a no-op.
        stream: where to draw; stderr by default. Nothing is drawn unless it is a TTY.
        min_interval: seconds between redraws.
        clock: a monotonic clock (tests pass a fake one).
    """

    def __init__(self, total: int | None = None, *, label: str = "", unit: str = "samples",
                 enabled: bool = True, stream: TextIO | None = None, min_interval: float = 0.1,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.total = total
        self.label = label
        self.unit = unit
        self.stream = stream if stream is not None else sys.stderr
        self.active = enabled and _is_tty(self.stream)
        self.min_interval = min_interval
        self.done = 0
        self._clock = clock
        self._start = clock()
        self._last_draw = float("-inf")
        self._width = 0

    def update(self, n: int = 1) -> None:
        """Count ``n`` more items; redraw if the last redraw is old enough."""
        self.done += n
        if not self.active:
            return
        now = self._clock()
        if now - self._last_draw >= self.min_interval:
            self._draw(now)

    def close(self) -> None:
        """Draw the final state and end the line."""
        if self.active:
            self._draw(self._clock())
            self.stream.write("\n")
            self.stream.flush()
            self.active = False

    def line(self, now: float | None = None) -> str:
        """The text of the bar at time ``now``."""
        elapsed = (self._clock() if now is None else now) - self._start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        count = f"{self.done}/{self.total}" if self.total else str(self.done)
        parts = [p for p in (self.label, f"{count} {self.unit}") if p]
        if self.total:
            parts.append(f"{100 * self.done // self.total}%")
        parts.append(f"{rate:.1f}/s")
        if self.total and rate > 0 and self.done < self.total:
            parts.append(f"ETA {format_duration((self.total - self.done) / rate)}")
        else:
            parts.append(f"elapsed {format_duration(elapsed)}")
        return "  ".join(parts)

    def _draw(self, now: float) -> None:
        text = self.line(now)
        # Pad with spaces so a shorter line fully covers the previous one.
        self.stream.write("\r" + text.ljust(self._width))
        self.stream.flush()
        self._width = len(text)
        self._last_draw = now

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _is_tty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # a closed or fake stream
        return False
