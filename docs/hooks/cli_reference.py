"""mkdocs hook: the command reference (``cli.md``) is generated from the typer app at every build, never written by hand.

It uses typer's own documentation generator (``typer ... utils docs``) on
the application object, so every command, argument and option in the
manual is the one the code has.
"""

from __future__ import annotations

from typing import Any

REFERENCE = "cli.md"


def on_files(files: Any, config: Any) -> Any:
    from mkdocs.structure.files import File

    files.append(File.generated(config, REFERENCE, content=cli_reference()))
    return files


def cli_reference() -> str:
    import typer
    from typer.cli import get_docs_for_click

    from pneumo_batch.cli.app import app

    command = typer.main.get_command(app)
    body = get_docs_for_click(obj=command, ctx=typer.Context(command), name="pneumo-batch", title="Commands")
    intro = ("Generated from the code at every build (`typer`'s documentation generator on the `pneumo-batch` app). "
             "Exit codes: [Exit codes](exit-codes.md).\n\n")
    title, _, rest = body.partition("\n")
    return f"{title}\n\n{intro}{rest.lstrip()}"
