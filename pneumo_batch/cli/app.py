"""The ``pneumo-batch`` application: composes one module per command."""

from __future__ import annotations

import multiprocessing.util
import os
import sys
from typing import Annotated

import typer

from pneumo_batch import __version__
from pneumo_batch.cli import (
    export_images,
    fit_scope,
    labels_add,
    labels_show,
    models,
    monitor,
    nightly,
    score,
    site,
    train,
    ui,
)
from pneumo_batch.cli.common import DEBUG_ENV, ExitCode, set_debug
from pneumo_batch.cli.help import WordsCommand, WordsGroup

app = typer.Typer(
    name="pneumo-batch",
    cls=WordsGroup,
    help="Screen pediatric chest X-rays for pneumonia in nightly batches.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("train", cls=WordsCommand)(train.train)
app.command("score", cls=WordsCommand)(score.score)
app.command("monitor", cls=WordsCommand)(monitor.monitor)
app.command("nightly", cls=WordsCommand)(nightly.nightly)
app.command("export-images", cls=WordsCommand)(export_images.export_images)
app.command("fit-scope", cls=WordsCommand)(fit_scope.fit_scope)
app.command("ui", cls=WordsCommand)(ui.ui)
app.command("validate", cls=WordsCommand)(site.validate)
app.command("adapt", cls=WordsCommand)(site.adapt)
app.command("compare", cls=WordsCommand)(site.compare)
app.command("promote", cls=WordsCommand)(models.promote)
app.command("rollback", cls=WordsCommand)(models.rollback)

labels = typer.Typer(name="labels", cls=WordsGroup, help="The label store: radiologists' reads that arrive after a night.",
                     no_args_is_help=True)
labels.command("add", cls=WordsCommand)(labels_add.labels_add)
labels.command("show", cls=WordsCommand)(labels_show.labels_show)
app.add_typer(labels)

model_folder = typer.Typer(name="models", cls=WordsGroup, help="The models folder: lineage, and which model is live.",
                           no_args_is_help=True)
model_folder.command("list", cls=WordsCommand)(models.models_list)
app.add_typer(model_folder)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"pneumo-batch {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
    debug: Annotated[
        bool, typer.Option("--debug", help=f"Print the traceback of an error too (or set {DEBUG_ENV}=1).")
    ] = False,
) -> None:
    """Screen pediatric chest X-rays for pneumonia in nightly batches."""
    set_debug(debug)


def main() -> None:
    """The console script: as ``app()``, but a bad option is one line too (typer would draw a box under the usage)."""
    try:
        code = typer.main.get_command(app).main(prog_name="pneumo-batch", standalone_mode=False)
    except typer.TyperException as error:  # typer's (vendored) click exceptions: usage errors and the like
        if type(error).__name__ == "NoArgsIsHelpError":  # no arguments at all: the help, as before
            error.show()
            sys.exit(ExitCode.USAGE)
        context = getattr(error, "ctx", None)
        hint = f" (see: {context.command_path} --help)" if context is not None else ""
        typer.echo(f"Error: {error.format_message()}{hint}", err=True)
        sys.exit(error.exit_code)
    except typer.Abort:  # Ctrl-C outside a command's work (while parsing)
        sys.exit(ExitCode.INTERRUPTED)
    if code in (ExitCode.INTERRUPTED, ExitCode.TERMINATED):
        # The command has stopped its work and said so; skip the interpreter's teardown, where native
        # threads caught mid-way by the signal (Ray's) may abort the process and lose the exit code.
        # Multiprocessing's own exit hook still runs: it releases the worker pool's semaphores, which the
        # resource tracker (a child process) would otherwise report on stderr after our one line.
        multiprocessing.util._exit_function()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code or 0)
