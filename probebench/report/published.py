"""What a published leaderboard (results/LEADERBOARD.md) holds, read back from its markdown.

``probebench publish`` compares the file it is about to write with the one
on disk: a suite section that disappears, or a suite whose seeds shrink,
needs ``--force``. It also names the runs behind the published file that are
missing from this checkout's results folder.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_SEEDS = re.compile(r"; seeds ([0-9, ]+); suite config")


@dataclass
class Section:
    """One suite's section: its seeds and the runs its numbers come from."""

    seeds: set[int] = field(default_factory=set)
    runs: list[str] = field(default_factory=list)


def sections(markdown: str) -> dict[str, Section]:
    """``{suite: Section}`` of a leaderboard written by ``probebench publish``."""
    found: dict[str, Section] = {}
    current: Section | None = None
    in_runs = False
    for line in markdown.splitlines():
        if line.startswith("## "):
            current = found.setdefault(line[3:].strip(), Section())
            in_runs = False
            continue
        if current is None:
            continue
        seeds = _SEEDS.search(line)
        if seeds:
            current.seeds |= {int(s) for s in seeds.group(1).replace(" ", "").split(",") if s}
        if line.startswith("| run |"):
            in_runs = True
        elif in_runs and line.startswith("|") and not line.startswith("|---"):
            current.runs.append(line.strip("|").split("|")[0].strip())
        elif in_runs and not line.startswith("|"):
            in_runs = False
    return found


def shrinkage(old: dict[str, Section], new: dict[str, Section]) -> list[str]:
    """What ``new`` loses against ``old``: dropped suites and lost seeds, one phrase each."""
    lost = []
    for name, section in old.items():
        if name not in new:
            lost.append(f"drops suite {name!r}")
        elif section.seeds - new[name].seeds:
            gone = ", ".join(map(str, sorted(section.seeds - new[name].seeds)))
            lost.append(f"loses seed(s) {gone} of {name!r}")
    return lost


def cells(markdown: str) -> dict[str, dict[tuple[str, str], str]]:
    """``{suite: {(row, column): text}}`` of every table in a published
    leaderboard: the row's first cell, the column header without its arrow,
    the cell's text without bold marks. A README or a docstring that quotes
    published numbers is checked against these."""
    found: dict[str, dict[tuple[str, str], str]] = {}
    current: dict[tuple[str, str], str] | None = None
    headers: list[str] = []
    for line in markdown.splitlines():
        if line.startswith("## "):
            current = found.setdefault(line[3:].strip(), {})
            headers = []
            continue
        if current is None or not line.startswith("|"):
            headers = [] if not line.startswith("|") else headers
            continue
        parts = [p.strip().replace("**", "") for p in line.strip().strip("|").split("|")]
        if not headers:
            headers = [p.rstrip(" ↑↓").strip() for p in parts]
        elif not line.startswith("|---"):
            for header, text in zip(headers[1:], parts[1:]):
                current[(parts[0], header)] = text
    return found
