"""``probebench show KIND NAME``: one component's docstring, options and reference.

``probebench show corruptions --out grid.png [--dataset D]`` draws instead a
grid of one image under every corruption and severity (from
``probebench.report.grids``).
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from probebench.cli.common import RegistryOption, load, stdout_console
from probebench.errors import UserError

if TYPE_CHECKING:
    from probebench.registry import Entry, Registry
    from probebench.suite import Config


def describe(entry: Entry) -> dict[str, Any]:
    """What ``show`` prints about a registry entry, as plain data."""
    from probebench.registry import options_of

    cls = entry.cls
    helps = getattr(cls, "option_help", None) or {}
    options = []
    for name, param in options_of(cls).items():
        annotation = param.annotation
        if annotation is inspect.Parameter.empty:
            annotation = type(param.default).__name__ if param.default is not inspect.Parameter.empty else ""
        elif not isinstance(annotation, str):
            annotation = getattr(annotation, "__name__", str(annotation))
        required = param.default is inspect.Parameter.empty
        options.append(
            {
                "name": name,
                "type": annotation,
                "required": required,
                "default": None if required else param.default,
                "help": helps.get(name, ""),
            }
        )
    takes_more = any(p.kind == p.VAR_KEYWORD for p in inspect.signature(cls.__init__).parameters.values())
    facts = {}
    if entry.kind == "metric":
        facts["higher_is_better"] = bool(getattr(cls, "higher_is_better", True))
    if entry.kind == "dataset":
        facts.update({k: getattr(cls, k) for k in ("num_classes", "shape") if hasattr(cls, k)})
    doc = cls.__doc__
    return {
        "kind": entry.kind,
        "name": entry.name,
        "class": f"{cls.__module__}.{cls.__qualname__}",
        "plugin": entry.plugin.name,
        "distribution": entry.plugin.distribution,
        "distribution_version": entry.plugin.version,
        "version": str(getattr(cls, "version", "1")),
        "doc": inspect.cleandoc(doc) if doc else "",
        "options": options,
        "accepts_other_options": takes_more,
        "reference": getattr(cls, "reference", None) or "",
        **facts,
    }


def _default_text(option: dict[str, Any]) -> str:
    if option["required"]:
        return "required"
    return json.dumps(option["default"], default=str)  # TOML-like: "auto", 10, true


def print_description(info: dict[str, Any]) -> None:
    from rich.table import Table
    from rich.text import Text

    console = stdout_console()
    console.print(
        Text(f"{info['kind']} {info['name']}", style="bold"),
        Text(
            f"  ({info['class']}, version {info['version']}; plugin {info['plugin']} from "
            f"{info['distribution']} {info['distribution_version']})",
            style="dim",
        ),
    )
    console.print()
    console.print(Text(info["doc"] or "(no docstring)"))
    for key in ("higher_is_better", "num_classes", "shape"):
        if key in info:
            console.print(Text(f"{key.replace('_', ' ')}: {info[key]}"))
    console.print()
    if info["options"]:
        table = Table("option", "type", "default", "help", box=None, pad_edge=False, title_justify="left")
        for option in info["options"]:
            table.add_row(Text(option["name"]), Text(option["type"]), Text(_default_text(option)), Text(option["help"]))
        console.print(Text('options (set them in a suite: {{ name = "{}", option = value }})'.format(info["name"])))
        console.print(table)
    else:
        console.print(Text("options: none"))
    if info["accepts_other_options"]:
        console.print(Text("accepts other options too (**kwargs)"))
    console.print()
    console.print(Text(f"reference: {info['reference'] or '-'}"))


def show(
    ctx: typer.Context,
    kind: Annotated[str, typer.Argument(help="Kind of component (scorer, corrector, ...; plural works too).")],
    name: Annotated[
        str | None,
        typer.Argument(
            help="Registered name, as `probebench ls KIND` lists it (with --out: names or patterns, comma-separated)."
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="corruptions only: write a PNG grid of every corruption and level.")
    ] = None,
    dataset: Annotated[
        str | None,
        typer.Option("--dataset", help="With --out: dataset to draw the image from (default: the default suite's)."),
    ] = None,
    data_root: Annotated[
        str | None, typer.Option("--data-root", help="With --out: folder with local data files.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for tooling.")] = False,
    registry: RegistryOption = None,
) -> None:
    """Show a component: its docstring, options (name, type, default, help) and reference."""
    from probebench.kinds import KINDS

    singular = kind[:-1] if kind.endswith("s") and kind[:-1] in KINDS else kind
    config, reg = load(ctx, registry)
    reg._check_kind(singular)
    if out is not None:
        if singular != "corruption":
            raise UserError(f"--out draws corruptions only; use `probebench show corruptions --out {out}`")
        _corruption_grid(config, reg, name, out, dataset, data_root)
        return
    if name is None:
        names = ", ".join(reg.names(singular)) or "none registered"
        raise UserError(f"name the {singular} to show: `probebench show {singular} NAME`; {singular}s: {names}")
    info = describe(reg.entry(singular, name))
    if as_json:
        typer.echo(json.dumps(info, indent=2, default=str))
    else:
        print_description(info)


def _corruption_grid(
    config: Config, reg: Registry, name: str | None, out: Path, dataset: str | None, data_root: str | None
) -> None:
    from probebench.suite import DEFAULT_SUITE, ComponentSpec, parse_suite

    try:
        from probebench.report.grids import corruption_grid
    except ImportError as exc:
        raise UserError(
            f"`probebench show corruptions --out` needs probebench.report.grids, which this probebench "
            f"lacks ({exc}); update probebench"
        ) from None
    names = []
    for part in (name or "*").split(","):  # names or fnmatch patterns, comma-separated
        if any(c in part for c in "*?["):
            names += reg.names("corruption", part)
        elif part:
            names.append(reg.entry("corruption", part).name)
    if not names:
        raise UserError("no corruptions are registered; install or enable a corruption plugin (`probebench ls`)")
    if dataset:
        reg.get("dataset", dataset)
        spec = ComponentSpec(dataset)
    elif DEFAULT_SUITE in config.suites:
        spec = parse_suite(config, DEFAULT_SUITE).dataset
    else:
        raise UserError(
            f"name a dataset with --dataset (`probebench ls datasets`); {config.path} has no suite {DEFAULT_SUITE!r}"
        )
    corruption_grid(reg, spec, names, out, data_root=data_root)
    from probebench.console import console

    console.print(f"wrote {out} ({len(names)} corruption(s) on dataset {spec.name!r})", soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("show")(show)
