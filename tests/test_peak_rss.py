"""The memory benchmark's peak RSS is the measured command's own (tests/benchmarks/timing.py)."""

import sys

from tests.benchmarks.timing import child_peak_rss


def test_child_peak_rss_is_the_childs_own():
    """A parent holding 512 MiB measures a bare interpreter well under that
    (a child forked from it directly would report the parent's 512), and a
    child that fills 200 MiB at about 200."""
    held = bytearray(b"1") * (512 * 1024 * 1024)  # every page written
    _seconds, bare = child_peak_rss([sys.executable, "-c", "pass"])
    _seconds, filled = child_peak_rss([sys.executable, "-c", "x = b'1' * (200 * 1024 * 1024)"])
    assert len(held) and bare < 100, bare
    assert 200 <= filled < 300, filled
