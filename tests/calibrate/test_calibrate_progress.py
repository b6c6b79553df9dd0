"""The progress line: drawn only on a terminal, at most ten times a second, with rate and ETA."""
from __future__ import annotations

import io

from rewriter.calibrate.progress import Progress, format_duration


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_line_shows_count_percent_rate_and_eta() -> None:
    clock = Clock()
    bar = Progress(total=100, label="calibrating", stream=FakeTTY(), clock=clock)
    bar.update(25)
    assert bar.line(clock.now + 5.0) == "calibrating  25/100 samples  25%  5.0/s  ETA 0:15"


def test_unknown_total_shows_elapsed_time() -> None:
    clock = Clock()
    bar = Progress(total=None, stream=FakeTTY(), clock=clock)
    bar.update(30)
    assert bar.line(clock.now + 90) == "30 samples  0.3/s  elapsed 1:30"


def test_redraws_at_most_ten_times_a_second_and_ends_the_line() -> None:
    clock, stream = Clock(), FakeTTY()
    with Progress(total=1000, stream=stream, clock=clock) as bar:
        for _ in range(1000):
            clock.now += 0.001  # 1000 updates over one second
            bar.update()
    text = stream.getvalue()
    assert 10 <= text.count("\r") <= 12  # ~10 throttled draws plus the final one
    assert text.endswith("\n") and "1000/1000" in text.splitlines()[-1]


def test_shorter_line_overwrites_the_previous_one() -> None:
    clock, stream = Clock(), FakeTTY()
    bar = Progress(total=None, stream=stream, clock=clock, min_interval=0)
    bar.update(5)
    first = stream.getvalue()
    bar.update(1)
    second = stream.getvalue()[len(first):]
    assert len(second) >= len(first)


def test_nothing_drawn_when_disabled_or_not_a_terminal() -> None:
    plain = io.StringIO()
    with Progress(total=3, stream=plain) as bar:
        bar.update(3)
    tty = FakeTTY()
    with Progress(total=3, stream=tty, enabled=False) as bar:
        bar.update(3)
    assert plain.getvalue() == "" and tty.getvalue() == "" and bar.done == 3


def test_format_duration() -> None:
    assert [format_duration(s) for s in (0, 59.6, 75, 3725)] == ["0:00", "1:00", "1:15", "1:02:05"]
