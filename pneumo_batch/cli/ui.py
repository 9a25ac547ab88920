"""``pneumo-batch ui``: the Evidently dashboard over the nights, on localhost."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pneumo_batch.cli.common import domain_errors
from pneumo_batch.errors import InputError


def ui(
    output_root: Annotated[
        Path | None,
        typer.Option(metavar="DIR", help="The nightly output root: its workspace/ is shown.", show_default=False),
    ] = None,
    workspace: Annotated[
        Path | None,
        typer.Option(metavar="DIR", help="An Evidently workspace folder instead (what `monitor --workspace` filled).",
                     show_default=False),
    ] = None,
    host: Annotated[str, typer.Option(metavar="ADDRESS", help="Address to listen on; keep it local.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, metavar="PORT", help="Port to listen on.")] = 8000,
) -> None:
    """Serve the Evidently UI over the nightly workspace until Ctrl-C: project pneumo-batch, tab Nights.

    Example: pneumo-batch ui --output-root /data/pneumo-batch --port 8000   (then open http://127.0.0.1:8000)

    The same as `evidently ui --workspace OUTPUT_ROOT/workspace`.
    """
    from pneumo_batch.monitoring import serve_workspace

    with domain_errors():
        if (output_root is None) == (workspace is None):
            raise InputError("give one of --output-root or --workspace")
        folder = workspace if workspace is not None else output_root / "workspace"  # type: ignore[operator]
        if not folder.is_dir():
            raise InputError(f"no workspace at {folder}: run `pneumo-batch nightly` first")
        typer.echo(f"Dashboard of {folder} on http://{host}:{port} (Ctrl-C stops it)", err=True)
        serve_workspace(folder, host=host, port=port)
