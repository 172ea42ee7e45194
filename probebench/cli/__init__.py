"""The ``probebench`` command: one module per sub-command, joined here.

Nothing heavy is imported at start-up: each command imports torch, pandas and
the pipeline inside its function, so ``probebench --help`` and ``ls`` are fast.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from probebench.errors import UserError


def _walk(command: Any) -> list[Any]:
    """``command`` and every sub-command under it (``cache ls`` too)."""
    return [command] + [c for sub in getattr(command, "commands", {}).values() for c in _walk(sub)]


def _without_placeholder(get_help_option: Any) -> Any:
    """Click makes the -h/--help flag lazily: give it no value placeholder either."""

    def wrapped(ctx: Any) -> Any:
        option = get_help_option(ctx)
        if option is not None:
            option.metavar = ""
        return option

    return wrapped


class _Group(TyperGroup):
    """Turns a UserError into one red line and exit code 2 (traceback with --debug).
    Flags show no ``<bool>`` placeholder in help: they take no value."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for command in _walk(self):
            for param in command.params:
                if getattr(param, "is_flag", False) and param.metavar is None:
                    param.metavar = ""
            command.get_help_option = _without_placeholder(command.get_help_option)

    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)
        for param in params:  # --install-completion and --show-completion are added after __init__
            if getattr(param, "is_flag", False) and param.metavar is None:
                param.metavar = ""
        return params

    def invoke(self, ctx: typer.Context) -> Any:  # type: ignore[override]  # typer hands its own Context subclass
        try:
            return super().invoke(ctx)
        except UserError as exc:
            if (ctx.obj or {}).get("debug"):
                raise
            from rich.markup import escape

            from probebench.console import console

            console.print(f"[red]error:[/] {escape(str(exc))}", soft_wrap=True)  # a message may hold [brackets]
            raise SystemExit(exc.exit_code) from None
        except KeyboardInterrupt:
            import os
            import signal
            import sys

            from probebench.console import console

            signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not turn this into a traceback
            console.print("[yellow]interrupted: finished stages are cached; run the same command again to resume[/]")
            sys.stdout.flush()
            sys.stderr.flush()
            # every artifact is already written atomically or not at all; exit now, so that no clean-up
            # still running in a library (progress threads, torch) can end the process by the signal instead
            os._exit(130)


app = typer.Typer(
    cls=_Group,
    help="probebench: benchmark miss detection and label-free correction of image classifiers.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        from probebench import __version__

        typer.echo(f"probebench {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks instead of one-line errors.")] = False,
    disable_plugin: Annotated[
        list[str] | None,
        typer.Option("--disable-plugin", help="Do not load the plugin (module or entry-point name); repeatable."),
    ] = None,
    allow_module: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-module",
            help="Let the registry file's [plugins] builtin import this module outside probebench.plugins "
            "(it runs its code); repeatable. Also $PROBEBENCH_ALLOW_MODULES (comma-separated).",
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option("--version", help="Print probebench's version and exit.", callback=_print_version, is_eager=True),
    ] = False,
) -> None:
    ctx.obj = {"debug": debug, "disabled": list(disable_plugin or []), "allowed": list(allow_module or [])}


from probebench.cli import (  # noqa: E402  (commands register on `app`)
    compare,
    layers,
    leaderboard,
    ls,
    new_plugin,
    plugins,
    publish,
    report,
    run,
    show,
)
from probebench.cli import evaluate as evaluate_command  # noqa: E402

for _module in (run, ls, show, plugins, new_plugin, layers, leaderboard, report, compare, publish):
    _module.register(app)
evaluate_command.register(app)

from probebench.cli import cache as cache_command  # noqa: E402

cache_command.register(app)


def main() -> None:
    """The ``probebench`` command. Once the command is over (its output flushed,
    other threads joined, the exit handlers run) the process ends with
    ``os._exit``: the interpreter's teardown, which frees every module and
    tensor one at a time, took 0.45 s of a 2.9 s warm run and about 1.3 s of
    a cold one. Not under a profiler or a tracer (``python -m cProfile``,
    coverage), which write their results in that teardown."""
    import sys

    try:
        app(prog_name="probebench")
        code: object = 0
    except SystemExit as stop:
        code = stop.code
    if sys.getprofile() is not None or sys.gettrace() is not None:
        raise SystemExit(code)
    _exit_now(code)


def _exit_now(code: object) -> None:
    import atexit
    import contextlib
    import os
    import sys
    import threading

    if code is None:
        code = 0
    elif not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: nothing more can be said
            stream.flush()
    os._exit(code)
