"""``probebench publish``: write results/LEADERBOARD.md, the published leaderboard.

It uses only runs whose suite config equals the suite as currently defined in
registry.toml (same ``config_hash``), so an edited suite never mixes with runs
of its old definition: re-run it and publish again.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from probebench.cli.common import (
    DEFAULT_ALPHA,
    RESULTS_DIR,
    AlphaOption,
    IncludeFailedOption,
    RegistryOption,
    ResultsDirOption,
    load,
    tie_rule,
)
from probebench.errors import UserError
from probebench.suite import DEFAULT_SUITE

if TYPE_CHECKING:
    from probebench.report.ties import Ties

COMMAND = "probebench publish"


def matching_runs(
    results_dir: Path, suite_name: str, config: str, include_failed: bool = False
) -> tuple[list[Path], set[str]]:
    """Finished runs of ``suite_name`` with ``config``, and the other configs seen for it."""
    import json

    from probebench import results

    matching: list[Path] = []
    others: set[str] = set()
    for run in results.find_runs(results_dir):
        try:
            head = json.loads((run / "run.json").read_text())
        except (OSError, ValueError):
            continue
        if (head.get("suite") or {}).get("name") != suite_name:
            continue
        if results.run_config(head) == config:
            matching.append(run)
        else:
            others.add(results.run_config(head))
    return results.finished_only(matching, include_failed), others


def _component(spec: dict[str, Any]) -> str:
    options = ", ".join(f"{k}={v}" for k, v in (spec.get("options") or {}).items())
    return f"`{spec.get('label') or spec.get('name')}`" + (f" ({options})" if options else "")


def suite_markdown(suite_dict: dict[str, Any], config: str, runs: list[Path], ties: Ties | None = None) -> str:
    from probebench import results
    from probebench.cli.leaderboard import provenance_text
    from probebench.report import active, correction
    from probebench.report import leaderboard as board
    from probebench.report.studies import study_views
    from probebench.report.tables import render_sections

    table, heads = results.combine(runs)
    directions = results.directions(list(heads.values()))
    scales = results.scales(list(heads.values()))
    parts = []
    for title, view in study_views(table, results.CLEAN):
        parts += board.sections(table, view, heads, title=title, ties=ties)
    seeds = sorted(table["seed"].unique().tolist())
    corruptions = ", ".join(f"`{c['name']}`" for c in suite_dict.get("corruptions") or []) or "none"
    lines = [f"## {suite_dict['name']}", ""]
    if suite_dict.get("description"):
        lines += [suite_dict["description"], ""]
    extra = "".join(
        f"; {key} {', '.join(_component(s) for s in suite_dict[key])}"
        for key in ("generators", "correctors")
        if suite_dict.get(key)
    )
    held_out = (
        f"; {suite_dict['validation']} training images held out for validation" if suite_dict.get("validation") else ""
    )
    lines += [
        f"Dataset {_component(suite_dict['dataset'])}, classifier {_component(suite_dict['classifier'])}; "
        f"scorers {', '.join(_component(s) for s in suite_dict.get('scorers', []))}{extra}; "
        f"corruptions {corruptions}{held_out}{_new_classes(suite_dict)}; seeds {', '.join(map(str, seeds))}; suite config `{config}`.",
        "",
    ]
    lines.append(render_sections(parts, directions, "markdown", scales))
    note = board.scaled_note(scales, table["metric"])
    if note:
        lines += [f"_{note}._", ""]
    gains = correction.load_gains(runs)
    correctors = [spec.get("label") or spec.get("name") for spec in suite_dict.get("correctors") or []]
    pooled = "" if gains is None else correction.markdown(gains, correctors)
    if pooled:
        lines += [pooled, ""]
    active_table = active.load(runs)
    if active_table is not None:
        lines += [active.markdown(active_table, active.load_hits(runs)), ""]
    lines.append(provenance_text(board.provenance(heads, table), "markdown"))
    return "\n".join(lines)


def _new_classes(suite_dict: dict[str, Any]) -> str:
    classes = suite_dict.get("new_classes") or []
    return f"; classes {', '.join(map(str, classes))} held out (new-class study)" if classes else ""


def publish(
    ctx: typer.Context,
    suite: Annotated[
        list[str],
        typer.Option("--suite", help="Suites to publish (repeatable or comma-separated)."),
    ] = [DEFAULT_SUITE],  # noqa: B006  (never mutated; --help shows it as the default)
    out: Annotated[Path, typer.Option("--out", help="Markdown file to write.")] = Path("results/LEADERBOARD.md"),
    registry: RegistryOption = None,
    results_dir: ResultsDirOption = RESULTS_DIR,
    include_failed: IncludeFailedOption = False,
    force: Annotated[
        bool, typer.Option("--force", help="Write even when a suite section or seeds of the published file are lost.")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the diff against the published file; write nothing.")
    ] = False,
    alpha: AlphaOption = DEFAULT_ALPHA,
) -> None:
    """Write the published leaderboard (results/LEADERBOARD.md) from every finished
    run of the named suites whose config matches registry.toml. It refuses to drop
    a suite or seeds the published file has (--force overrides)."""
    from probebench import results
    from probebench.cli.leaderboard import split_list
    from probebench.console import console
    from probebench.significance import check_alpha
    from probebench.suite import parse_suite

    check_alpha(alpha)
    config, reg = load(ctx, registry)
    names = split_list(suite)
    blocks = []
    commands = []
    for name in names:
        suite_dict = parse_suite(config, name, reg).as_dict()
        config_id = results.config_hash(suite_dict)
        runs, others = matching_runs(results_dir, name, config_id, include_failed)
        if not runs:
            extra = f" (runs with other configs: {', '.join(sorted(others))})" if others else ""
            raise UserError(
                f"no run of suite {name!r} with its current config {config_id} under {results_dir}"
                f"{extra}; run `probebench run {name} --seeds 0,1,2` first"
            )
        heads = {run.name: results.read_header(run) for run in runs}
        blocks.append(suite_markdown(suite_dict, config_id, runs, tie_rule(alpha, runs, heads, lambda: reg)))
        commands.append(f"probebench run {name} --seeds {','.join(map(str, _seeds(runs)))}")
    suites_arg = " ".join(f"--suite {n}" for n in names)
    header = [
        "# probebench leaderboard",
        "",
        f"<!-- generated by `{COMMAND} {suites_arg}`; do not edit by hand -->",
        "",
        "Regenerate with `probebench run SUITE --seeds 0,1,2` for each suite below, then",
        f"`{COMMAND} {suites_arg}`: it reads every run under `results/` whose suite config",
        "matches the current `registry.toml` (runs of other configs are never mixed in).",
        "",
        "A *miss* is a test image the classifier gets wrong; a method's confidence should be low on",
        "misses. ↑/↓: higher/lower is better; **bold**: best in its column and every value not",
        f"significantly worse (paired bootstrap, Holm-corrected, α = {alpha:g}; the note under each table",
        "says how its marks were decided; where a column has no per-sample scores, a value is tied when its",
        "interval overlaps the best's); `±`: standard deviation",
        "over seeds (each seed trains its own classifier); brackets: 95% percentile-bootstrap",
        "intervals over test samples. AURC and E-AURC are ×1000. Definitions: `probebench ls metrics`.",
        "",
        "The runs below come from exactly these commands:",
        "",
        "```",
        *commands,
        f"{COMMAND} {suites_arg}",
        "```",
        "",
    ]
    text = "\n".join(header) + "\n" + "\n".join(blocks)
    old = _read(out)
    _note_missing_runs(out, old, results_dir)
    if dry_run:
        import difflib

        diff = difflib.unified_diff(old.splitlines(True), text.splitlines(True), str(out), f"{out} (new)")
        typer.echo("".join(diff) or f"{out} would not change\n", nl=False)
        lost = _shrinkage(old, text)
        if lost and not force:
            console.print(f"[yellow]publish would refuse this without --force: it {'; '.join(lost)}[/]")
        return
    lost = _shrinkage(old, text)
    if lost and not force:
        raise UserError(
            f"publishing would shrink {out}: it {'; '.join(lost)}; run those suites here first, "
            "or add --force (--dry-run shows the diff)"
        )
    from probebench.cache import atomic_write

    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(out, lambda tmp: tmp.write_text(text))
    except OSError as exc:
        raise UserError(f"cannot write {out}: {exc.strerror or exc}; choose another --out") from None
    console.print(f"wrote {out} ({', '.join(names)})")


def _seeds(runs: list[Path]) -> list[int]:
    from probebench import results

    return sorted({int(s) for run in runs for s in results.read_header(run).get("suite", {}).get("seeds", [])})


def _read(out: Path) -> str:
    try:
        return out.read_text()
    except FileNotFoundError:
        return ""
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read the published {out}: {exc}") from None


def _shrinkage(old: str, new: str) -> list[str]:
    from probebench.report.published import sections, shrinkage

    return shrinkage(sections(old), sections(new))


def _note_missing_runs(out: Path, old: str, results_dir: Path) -> None:
    from probebench.console import console
    from probebench.report.published import sections

    missing = [r for s in sections(old).values() for r in s.runs if not (results_dir / r).is_dir()]
    if missing:
        console.print(f"[yellow]runs behind {out} missing under {results_dir}: {', '.join(missing)}[/]")


def register(app: typer.Typer) -> None:
    app.command("publish")(publish)
