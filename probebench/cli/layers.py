"""``probebench layers CLASSIFIER [--dataset D]`` (or ``--checkpoint FILE
[--arch ARCH]`` for a saved model): a classifier's module names with their
output shapes, to pick a layer for a prober."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import typer

from probebench.cli.common import RegistryOption, load, stdout_console
from probebench.errors import UserError

if TYPE_CHECKING:  # torch stays out of CLI start-up
    import torch


def module_shapes(model: torch.nn.Module, shape: tuple[int, ...]) -> list[tuple[str, str, list[int] | None]]:
    """(name, module type, output shape [1, ...], or None when the module's output
    is not a tensor or it is not called) of every named module, parents before
    their children, from one pass of a zero image."""
    import torch

    outputs: dict[str, list[int] | None] = {}
    modules = dict(model.named_modules())
    if isinstance(model, torch.jit.ScriptModule):  # compiled: no hooks fire, names only
        return [(name, module.original_name, None) for name, module in modules.items() if name]

    def hook(name: str) -> Callable[[torch.nn.Module, object, object], None]:
        def record(_module: torch.nn.Module, _inputs: object, out: object) -> None:
            outputs[name] = list(out.shape) if isinstance(out, torch.Tensor) else None

        return record

    handles = [module.register_forward_hook(hook(name)) for name, module in modules.items() if name]
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, *shape))
    finally:
        for handle in handles:
            handle.remove()
    return [(name, type(module).__name__, outputs.get(name)) for name, module in modules.items() if name]


def layers(
    ctx: typer.Context,
    classifier: Annotated[
        str | None, typer.Argument(help="Registered classifier name (`probebench ls classifiers`).")
    ] = None,
    checkpoint: Annotated[
        str | None,
        typer.Option(
            "--checkpoint", help="A saved model (state_dict with --arch, TorchScript, or torch.export .pt2) to list."
        ),
    ] = None,
    arch: Annotated[
        str | None,
        typer.Option("--arch", help="Architecture of a --checkpoint state_dict: cnn, timm:resnet18 or pkg.mod:fn."),
    ] = None,
    arch_options: Annotated[
        str | None,
        typer.Option("--arch-options", help='Options of --arch as TOML table entries, e.g. "width = 8".'),
    ] = None,
    dataset: Annotated[
        str | None,
        typer.Option("--dataset", help="Dataset whose image shape and classes to use (default: the default suite's)."),
    ] = None,
    registry: RegistryOption = None,
) -> None:
    """List a classifier's layers (module names) with their output shapes.

    Any name works as a prober ``layer``; its features are the output flattened
    (the last column)."""
    import math

    from rich.table import Table

    from probebench.suite import DEFAULT_SUITE

    config, reg = load(ctx, registry)
    if dataset is None:
        default = config.suites.get(DEFAULT_SUITE, {}).get("dataset", "mnist-5k")
        dataset = default if isinstance(default, str) else default.get("name", "mnist-5k")
    if (classifier is None) == (checkpoint is None):
        raise UserError("probebench layers: name a CLASSIFIER or give --checkpoint FILE, not both")
    data = reg.create("dataset", dataset)
    if checkpoint is not None:
        classifier = "checkpoint"
        options: dict[str, object] = {"path": checkpoint, **({"arch": arch} if arch else {})}
        if arch_options:
            options["arch_options"] = _toml_table(arch_options)
    else:
        options = {}
    assert classifier is not None
    model = reg.create("classifier", classifier, options).build(data.num_classes, tuple(data.shape))
    table = Table(
        "layer",
        "module",
        "output shape",
        "features",
        box=None,
        pad_edge=False,
        title=f"{classifier} on {dataset} images {list(data.shape)}, {data.num_classes} classes",
    )
    module_shapes_rows = module_shapes(model, tuple(data.shape))
    for name, kind, out in module_shapes_rows:
        if out is None:
            table.add_row(name, kind, "-", "-")
        else:
            table.add_row(name, kind, "[N, " + ", ".join(map(str, out[1:])) + "]", str(math.prod(out[1:])))
    stdout_console().print(table)
    if all(out is None for _name, _kind, out in module_shapes_rows):
        stdout_console().print("a TorchScript model runs no forward hooks: its layers cannot feed probers")


def _toml_table(text: str) -> dict:
    """``"width = 8, dropout = 0.1"`` as a dict; bad TOML is a one-line error."""
    import tomllib

    try:
        return tomllib.loads(f"table = {{ {text} }}")["table"]
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"--arch-options {text!r} is not TOML table entries like 'width = 8' ({exc})") from None


def register(app: typer.Typer) -> None:
    app.command("layers")(layers)
