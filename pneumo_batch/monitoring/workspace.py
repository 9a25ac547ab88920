"""The Evidently workspace that collects every monitoring run as a snapshot."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from evidently.core.report import Snapshot


WORKSPACE_ENV = "PNEUMO_BATCH_WORKSPACE"
"""Environment variable naming the Evidently workspace (the CLI's ``--workspace`` default)."""
DEFAULT_PROJECT = "pneumo-batch"
"""Name of the Evidently project that collects the runs."""


def add_to_workspace(snapshot: Snapshot, workspace: Path, project: str = DEFAULT_PROJECT) -> dict[str, str]:
    """Add ``snapshot`` to the local Evidently workspace at ``workspace`` (created if needed)."""
    from evidently.ui.workspace import Workspace

    workspace.mkdir(parents=True, exist_ok=True)
    store = Workspace(str(workspace))
    found = store.search_project(project)
    target = found[0] if found else store.create_project(
        project, description="Nightly pneumo-batch runs: drift and class balance against the training profile"
    )
    ref = store.add_run(target.id, snapshot, include_data=False)
    return {"path": str(workspace), "project": project, "project_id": str(target.id), "snapshot_id": str(ref.id)}
