"""The layout keeps its promises (docs/ARCHITECTURE.md): one engine seam, public names only, small modules."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pneumo_batch.scoring

PACKAGE = Path(pneumo_batch.scoring.__file__).resolve().parents[1]
#: Modules over this many lines want splitting by job.
MAX_MODULE_LINES = 400


def imported_modules(path: Path) -> list[tuple[str, list[str]]]:
    """(module, names) for every ``import`` and ``from ... import`` in a file, at any depth."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.append((node.module, [alias.name for alias in node.names]))
        elif isinstance(node, ast.Import):
            found.extend((alias.name, []) for alias in node.names)
    return found


def test_every_module_is_small():
    sizes = {str(path.relative_to(PACKAGE)): len(path.read_text().splitlines()) for path in PACKAGE.rglob("*.py")}
    assert {name: lines for name, lines in sizes.items() if lines > MAX_MODULE_LINES} == {}


def test_the_cli_and_the_nightly_job_never_import_an_engine():
    callers = [*sorted((PACKAGE / "cli").glob("*.py")), PACKAGE / "nightly.py", PACKAGE / "nightly_config.py"]
    for path in callers:
        engines = [module for module, _ in imported_modules(path) if module.startswith("pneumo_batch.scoring.engines")]
        assert engines == [], f"{path.name} imports {engines}"
    code = "import sys, pneumo_batch.cli.app, pneumo_batch.nightly; sys.exit(sorted(m for m in sys.modules if '.engines.' in m) or 0)"
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr


def test_engines_use_only_the_public_names_of_the_scoring_package():
    public = set(pneumo_batch.scoring.__all__)
    for path in sorted((PACKAGE / "scoring" / "engines").glob("*.py")):
        for module, names in imported_modules(path):
            if module == "pneumo_batch.scoring":
                assert set(names) <= public, f"{path.name} imports {sorted(set(names) - public)}"
            private = [name for name in names if name.startswith("_") and not name.startswith("__")]
            assert not (module.startswith("pneumo_batch") and private), f"{path.name} imports {private} from {module}"
