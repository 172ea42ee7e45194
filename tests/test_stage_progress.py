"""The driver's view of a graph run by Ray workers: per stage, tasks done,
running and failed with an ETA, as plain lines in a log and as a rich table
in a terminal."""

from __future__ import annotations

import io
import re
import time

from rich.console import Console

from probebench.executors.progress import StageProgress
from probebench.pipeline.graph import Graph, Task


def nothing(run, *inputs):
    return None


GRAPH = Graph(
    (
        Task("train/seed=0", "train", (), nothing),
        Task("score/a", "score", ("train/seed=0",), nothing),
        Task("score/b", "score", ("train/seed=0",), nothing),
        Task("score/c", "score", ("train/seed=0",), nothing),
    )
)


def midway() -> StageProgress:
    """Training done; of three score tasks one failed, one running."""
    progress = StageProgress(GRAPH, "run on ray")
    progress.started("train")
    progress.finished("train")
    progress.started("score")
    progress.started("score")
    progress.finished("score", failed=True)
    return progress


def test_plain_lines_say_per_stage_what_is_done_running_and_failed_with_an_eta(monkeypatch, capsys):
    monkeypatch.setenv("PROBEBENCH_HEARTBEAT", "0.05")
    progress = midway()
    time.sleep(0.1)
    progress.tick()
    progress.finished("score")
    progress.started("score")
    progress.finished("score")
    progress.close(ok=True)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "start run on ray (4 tasks)"
    assert "run on ray: train 1/1 done" in lines
    assert "run on ray: score 3/3 done, 1 failed" in lines
    beat = next(line for line in lines if line.startswith("…"))
    assert re.fullmatch(r"… run on ray: train 1/1 done; score 1/3 done, 1 running, 1 failed; eta 0:0\d", beat), beat
    assert re.fullmatch(r"done run on ray: 4/4 tasks in 0:0\d", lines[-1])


def test_the_live_table_in_a_terminal(capsys):
    progress = midway()
    screen = io.StringIO()
    Console(file=screen, force_terminal=True, width=80, color_system=None).print(progress.table())
    rows = [line.split() for line in screen.getvalue().splitlines()]
    assert rows[0][:4] == ["run", "on", "ray", "·"] and rows[0][4] == "eta"  # known once a task is done
    assert ["stage", "done", "running", "failed", "total"] in rows
    assert ["train", "1", "0", "0", "1"] in rows
    assert ["score", "1", "1", "1", "3"] in rows
    progress.close(ok=False)
    assert capsys.readouterr().err.splitlines()[-1].startswith("stopped run on ray: 2/4 tasks in ")
