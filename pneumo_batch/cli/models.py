"""``pneumo-batch promote``, ``rollback`` and ``models list``: which model is live, and its lineage."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pneumo_batch.cli.common import domain_errors

MODELS_HELP = "The models folder (default: the shipped one, with its DEFAULT file)."


def promote(
    model: Annotated[str, typer.Argument(metavar="MODEL", help="A model directory's name in the models folder.", show_default=False)],
    models_dir: Annotated[Path | None, typer.Option(metavar="FOLDER", help=MODELS_HELP, show_default=False)] = None,
    force: Annotated[bool, typer.Option("--force", help="Promote a model never compared, or compared worse (recorded).")] = False,
) -> None:
    """Make MODEL the live model (DEFAULT), if compare found it not worse; the audit log records it.

    Example: pneumo-batch promote site-v1
    """
    from pneumo_batch.registry import models_folder, promote as promote_model

    with domain_errors():
        folder = models_folder(models_dir)
        record = promote_model(folder, Path(model).name, force=force)
    forced = " (forced)" if record["forced"] else ""
    typer.echo(f"live model: {record['to']} (was {record['from']}){forced}")


def rollback(
    models_dir: Annotated[Path | None, typer.Option(metavar="FOLDER", help=MODELS_HELP, show_default=False)] = None,
) -> None:
    """Make the model the last promotion replaced live again; the audit log records it.

    Example: pneumo-batch rollback
    """
    from pneumo_batch.registry import models_folder, rollback as rollback_model

    with domain_errors():
        record = rollback_model(models_folder(models_dir))
    typer.echo(f"live model: {record['to']} (was {record['from']})")


def models_list(
    models_dir: Annotated[Path | None, typer.Option(metavar="FOLDER", help=MODELS_HELP, show_default=False)] = None,
) -> None:
    """List the models folder: each model's version, where it came from, and which is live.

    Example: pneumo-batch models list
    """
    from pneumo_batch.registry import list_models, models_folder

    with domain_errors():
        entries = list_models(models_folder(models_dir))
    for entry in entries:
        live = "*" if entry.live else " "
        parent = f" from {entry.parent}" if entry.parent else ""
        typer.echo(f"{live} {entry.name:<28} {entry.version:<32} {entry.kind}{parent}")
