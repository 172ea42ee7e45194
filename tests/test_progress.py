"""Progress as a CI log shows it (stderr not a terminal): a line when a stage
starts and ends, and heartbeats with done/total, an ETA and what is running."""

import re
import time

from probebench import console as progress


def test_plain_progress_lines_with_heartbeat_and_eta(monkeypatch, capsys):
    monkeypatch.setenv("PROBEBENCH_HEARTBEAT", "0.05")
    assert not progress.console.is_terminal
    with progress.task("score seed 0", 4) as advance:
        progress.running("scorer msp on clean")
        advance()
        time.sleep(0.3)
        advance(3)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "start score seed 0 (4 steps)"
    assert re.fullmatch(r"done score seed 0: 4/4 in 0:0\d", lines[-1])
    beats = lines[1:-1]
    assert len(beats) >= 2
    assert all(
        re.fullmatch(r"… score seed 0: 1/4 \(25%\), 0:0\d elapsed, eta 0:\d\d, running scorer msp on clean", b)
        for b in beats
    ), beats


def test_a_failed_stage_says_it_stopped(capsys):
    try:
        with progress.task("train cnn seed 0", 5) as advance:
            advance(2)
            raise RuntimeError("diverged")
    except RuntimeError:
        pass
    assert capsys.readouterr().err.splitlines()[-1].startswith("stopped train cnn seed 0: 2/5 in ")
