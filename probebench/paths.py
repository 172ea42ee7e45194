"""Path parts from user input, and run folders that appear only when complete.

Every file or folder name that contains a suite name, a component label or an
option value goes through :func:`safe_part`, so ``../../x`` can never leave
``results/`` or ``--out``.

A run is written into a hidden sibling ``.<name>.partial`` of its destination
and renamed into place only when it is complete: a folder without the dot is
always a finished (or failed-but-complete) run; an interrupted or crashed run
stays in its ``.partial`` folder, with ``status`` in its run.json saying why.
When the same run (same suite, or same ``--out``) is run again and completes,
the partial folders of its earlier interrupted or failed attempts are removed:
the finished run supersedes them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TypeVar

from probebench.console import console
from probebench.errors import UserError

T = TypeVar("T")

MAX_PART = 100  # characters; well below every filesystem's 255-byte name limit
PARTIAL_SUFFIX = ".partial"


def safe_part(text: str) -> str:
    """``text`` as one harmless path component.

    Characters other than letters, digits and ``- _ . @`` become ``_``; leading
    dots become ``_`` too (so the part is never ``.``, ``..`` or hidden); the
    result is at most ``MAX_PART`` characters and never empty. Plain names
    (``mnist-quick``, ``prober-ref``) are returned unchanged.
    """
    part = "".join(c if c.isalnum() or c in "-_.@" else "_" for c in str(text))
    body = part.lstrip(".")
    part = "_" * (len(part) - len(body)) + body
    return part[:MAX_PART] or "_"


def _unwritable(where: Path, exc: OSError) -> UserError:
    return UserError(f"cannot write results to {where}: {exc.strerror or exc}; choose another --out")


@dataclass
class RunFolder:
    """Where a run is written (``partial``) and where it appears when complete (``final``)."""

    final: Path
    partial: Path
    overwrite: bool = False
    attempts: str = ""  # a regex matching the names of partial folders of earlier attempts at the same run

    def complete(self) -> Path:
        """Rename the finished run into place and return its real path.

        With ``overwrite``, an existing ``final`` is moved aside first and
        deleted only after the new run is in place.
        """
        old = None
        if self.overwrite and self.final.exists() and any(self.final.iterdir()):
            old = self.final.parent / f".{self.final.name}.old-{os.getpid()}"
            os.rename(self.final, old)
        try:
            os.rename(self.partial, self.final)  # replaces an empty folder, refuses a non-empty one
        except OSError as exc:
            if old is not None:
                os.rename(old, self.final)
            raise UserError(
                f"could not move the finished run into {self.final} ({exc.strerror or exc}); "
                f"it is complete in {self.partial}: move it yourself"
            ) from None
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return self.final

    def stale_attempts(self) -> list[Path]:
        """Partial folders of earlier attempts at this run that stopped
        (run.json status interrupted or failed); never a running one."""
        if not self.attempts:
            return []
        stale = []
        for folder in sorted(self.partial.parent.iterdir()):
            if folder == self.partial or not folder.is_dir() or not re.fullmatch(self.attempts, folder.name):
                continue
            try:
                status = json.loads((folder / "run.json").read_text()).get("status")
            except (OSError, ValueError, AttributeError):
                continue  # not a run folder we can read: leave it alone
            if status in ("interrupted", "failed"):
                stale.append(folder)
        return stale

    def discard(self) -> None:
        """Remove the partial folder (a run that stopped on bad input, before any result)."""
        shutil.rmtree(self.partial, ignore_errors=True)


def run_id(suite_name: str, clock: datetime | None = None) -> str:
    """``<suite>-<YYYYmmdd-HHMMSS>`` (the suite name made path-safe)."""
    return f"{safe_part(suite_name)}-{(clock or datetime.now()).strftime('%Y%m%d-%H%M%S')}"


def new_run_folder(results_root: Path, suite_name: str, clock: datetime | None = None) -> RunFolder:
    """A run folder under ``results_root`` that no other run has or will get.

    The time-stamped id gets ``-2``, ``-3``, ... when that id is taken (runs
    started in the same second): readable names that sort by start time.
    The claim is the exclusive creation of the ``.partial`` folder (``mkdir``
    fails if it exists), so concurrent runs never share one.
    """
    base = run_id(suite_name, clock)
    try:
        results_root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _unwritable(results_root, exc) from None
    for n in range(1, 10_000):
        name = base if n == 1 else f"{base}-{n}"
        partial = results_root / f".{name}{PARTIAL_SUFFIX}"
        try:
            partial.mkdir()
        except FileExistsError:
            continue
        except OSError as exc:
            raise _unwritable(results_root, exc) from None
        if (results_root / name).exists():  # a finished run already holds that name
            partial.rmdir()
            continue
        attempts = rf"\.{re.escape(safe_part(suite_name))}-\d{{8}}-\d{{6}}(-\d+)?{re.escape(PARTIAL_SUFFIX)}"
        return RunFolder(results_root / name, partial, attempts=attempts)
    raise UserError(f"no free run folder for {base!r} under {results_root}; remove old .partial folders there")


def out_folder(out: Path, overwrite: bool) -> RunFolder:
    """The run folder for an explicit ``--out DIR``.

    An existing non-empty DIR is refused unless ``overwrite``: replacing a
    finished run (or anything else) silently would lose it, and files left
    from an earlier run (PNGs) would mix into the new one. With
    ``overwrite`` the old DIR is replaced only when the new run is complete.
    """
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; give a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise UserError(
            f"--out {out} already holds files (an earlier run?); choose a new folder, "
            "or add --overwrite to replace it once this run completes"
        )
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = Path(tempfile.mkdtemp(prefix=f".{safe_part(out.name)}.", suffix=PARTIAL_SUFFIX, dir=out.parent))
        os.chmod(partial, 0o777 & ~current_umask())  # mkdtemp makes 0700; a run folder is as shared as any other
    except OSError as exc:
        raise _unwritable(out, exc) from None
    attempts = rf"\.{re.escape(safe_part(out.name))}\.[^.]+{re.escape(PARTIAL_SUFFIX)}"
    return RunFolder(out, partial, overwrite, attempts=attempts)


def current_umask() -> int:
    """The process umask (read without changing it where /proc allows)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_run_folder(
    out: Path | None,
    name: str,
    write: Callable[[Path], T],
    overwrite: bool = False,
    results_root: Path = Path("results"),
) -> tuple[Path, T]:
    """Claim a run folder (``out``, else a new one under ``results_root``), call
    ``write(partial)`` and move the complete run into place: the one way every
    command and the Python API write a run. Bad input (``UserError``) leaves no
    folder behind; any other stop keeps the partial folder and says where."""
    folder = out_folder(out, overwrite) if out is not None else new_run_folder(results_root, name)
    try:
        value = write(folder.partial)
    except UserError:
        folder.discard()  # bad input found before any result: no folder to mistake for a run
        raise
    except BaseException:
        console.print(f"the unfinished run is kept in {folder.partial} (run.json says why it stopped)", soft_wrap=True)
        raise
    final = folder.complete()
    for stale in folder.stale_attempts():
        shutil.rmtree(stale, ignore_errors=True)
        console.print(f"removed {stale}: an earlier, unfinished attempt at this run", soft_wrap=True)
    return final, value
