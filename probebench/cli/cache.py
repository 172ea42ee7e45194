"""``probebench cache ls|verify|gc|clear|path``: look after the artifact cache."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

from probebench.cli.common import RegistryOption, stdout_console
from probebench.errors import UserError

app = typer.Typer(help="Inspect, check and tidy the artifact cache.", no_args_is_help=True)

CacheDirOption = Annotated[
    Path | None,
    typer.Option("--cache-dir", help="Artifact cache (default: $PROBEBENCH_CACHE or ~/.cache/probebench)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _root(cache_dir: Path | None) -> Path:
    from probebench.cache import cache_root

    root = cache_dir or cache_root()
    if root.exists() and not root.is_dir():
        raise UserError(f"cache directory {root} is a file; pass --cache-dir DIR (or PROBEBENCH_CACHE) a folder")
    return root


def human_size(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def human_age(seconds: float) -> str:
    for unit, length in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= length:
            return f"{seconds / length:.1f} {unit}"
    return f"{seconds:.0f} s"


def _print_paths(paths: list[Path], as_json: bool, what: str) -> None:
    if as_json:
        typer.echo(json.dumps([str(p) for p in paths], indent=1))
    else:
        for path in paths:
            typer.echo(f"{what} {path}")


@app.command("path")
def path(cache_dir: CacheDirOption = None) -> None:
    """Print the cache folder in use."""
    typer.echo(str(_root(cache_dir)))


@app.command("ls")
def ls(cache_dir: CacheDirOption = None, as_json: JsonOption = False) -> None:
    """List cached artifacts by stage: how many, their size, when they were last used, and which
    suites (name@config) use them, as recorded by `probebench run`."""
    from rich.table import Table

    from probebench.cache_inventory import entries, users

    root = _root(cache_dir)
    found, used = entries(root), users(root)
    now = time.time()
    if as_json:
        rows = [
            {
                "stage": e.stage,
                "key": e.key,
                "path": str(e.path),
                "bytes": e.size,
                "last_used": e.last_used,
                "suites": sorted(used.get((e.stage, e.key), set())),
            }
            for e in found
        ]
        typer.echo(json.dumps(rows, indent=1))
        return
    table = Table(
        "stage", "artifacts", "size", "last used", "least recently used", "used by suites", box=None, pad_edge=False
    )
    for stage in sorted({e.stage for e in found}):
        mine = [e for e in found if e.stage == stage]
        ages = [now - e.last_used for e in mine]
        suites = sorted({user for e in mine for user in used.get((e.stage, e.key), set())})
        table.add_row(
            stage, str(len(mine)), human_size(sum(e.size for e in mine)), human_age(min(ages)) + " ago",
            human_age(max(ages)) + " ago", ", ".join(suites) or "-",
        )  # fmt: skip
    out = stdout_console()
    out.print(table if found else f"no artifacts in {root}")
    if found:
        out.print(f"{len(found)} artifacts, {human_size(sum(e.size for e in found))} in {root}")


@app.command("verify")
def verify(cache_dir: CacheDirOption = None, as_json: JsonOption = False) -> None:
    """Check every artifact's checksum and stored key; exit 1 listing the bad ones."""
    from probebench.cache_inventory import entries, problem
    from probebench.console import task

    root = _root(cache_dir)
    found = entries(root)
    bad = []
    with task("verify the cache", len(found)) as advance:
        for entry in found:
            reason = problem(entry)
            if reason is not None:
                bad.append({"path": str(entry.path), "stage": entry.stage, "problem": reason})
            advance()
    if as_json:
        typer.echo(json.dumps(bad, indent=1))
    else:
        for item in bad:
            typer.echo(f"bad {item['path']}: {item['problem']}")
        typer.echo(f"{len(found) - len(bad)} of {len(found)} artifacts sound in {root}")
    if bad:
        raise typer.Exit(1)


@app.command("gc")
def gc(
    cache_dir: CacheDirOption = None,
    older_than: Annotated[
        float | None,
        typer.Option("--older-than", min=0, help="Also remove artifacts not used for more than this many days."),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List what would be removed; remove nothing.")] = False,
    unreachable: Annotated[
        bool,
        typer.Option(
            "--unreachable",
            help="Also remove artifacts that no suite of the registry (at its current config) uses, as `probebench "
            "run` recorded; lists them only, unless --yes.",
        ),
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="With --unreachable: remove, not only list.")] = False,
    registry: RegistryOption = None,
    as_json: JsonOption = False,
) -> None:
    """Remove leftovers of interrupted writes (older than an hour), orphan
    sidecars and use markers and, with --older-than, artifacts unused for that
    long; with --unreachable --yes, artifacts no current suite uses."""
    from probebench.cache_inventory import entries, leftovers, prune_empty, remove, stale

    root = _root(cache_dir)
    doomed = leftovers(root)
    if older_than is not None:
        doomed += [e.path for e in stale(entries(root), older_than)]
    if unreachable:
        doomed += [p for p in _unreachable(root, registry) if p not in doomed]
        dry_run = dry_run or not yes
    _print_paths(doomed, as_json, "would remove" if dry_run else "remove")
    if dry_run:
        if unreachable and not yes and not as_json:
            typer.echo(f"{len(doomed)} files would be removed; add --yes to remove them")
        return
    freed = remove(doomed)
    prune_empty(root)
    if not as_json:
        typer.echo(f"removed {len(doomed)} files, freed {human_size(freed)} in {root}")


def _unreachable(root: Path, registry: Path | None) -> list[Path]:
    """Artifacts that no suite of ``registry`` at its current config uses, and
    the use markers of suites (or configs) that the registry no longer has."""
    from probebench import results
    from probebench.cache import suite_user
    from probebench.cache_inventory import entries, retired_markers, unreachable, users
    from probebench.suite import load_config, parse_suite

    config = load_config(registry)
    current = {suite_user(name, results.config_hash(parse_suite(config, name).as_dict())) for name in config.suites}
    return [e.path for e in unreachable(entries(root), users(root), current)] + retired_markers(root, current)


@app.command("clear")
def clear(
    cache_dir: CacheDirOption = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete every artifact (and dataset copy) in the cache; asks first unless --yes."""
    from probebench.cache_inventory import everything, prune_empty, remove

    root = _root(cache_dir)
    doomed = everything(root)
    if not doomed:
        typer.echo(f"nothing to clear in {root}")
        return
    if not yes and not typer.confirm(f"delete {len(doomed)} cached files under {root}?"):
        raise typer.Exit(1)
    freed = remove(doomed)
    prune_empty(root)
    typer.echo(f"removed {len(doomed)} files, freed {human_size(freed)} in {root}")


def register(main: typer.Typer) -> None:
    main.add_typer(app, name="cache")
