"""The CLI documents itself, the README and the manual document the CLI, the manual builds, light paths stay light."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from pneumo_batch.cli.app import app
from pneumo_batch.cli.common import ExitCode

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text()
#: The hand-written manual (the command reference is generated at build time, so it proves nothing here).
MANUAL = README + "".join(page.read_text() for page in sorted((ROOT / "docs").glob("*.md")))
EXIT_CODES_PAGE = (ROOT / "docs" / "exit-codes.md").read_text()
README_MAX_LINES = 120
SUBCOMMANDS = sorted(
    f"{group.typer_instance.info.name} {command.name}"
    for group in app.registered_groups
    for command in group.typer_instance.registered_commands
)
COMMANDS = sorted(command.name for command in app.registered_commands) + SUBCOMMANDS


def test_every_command_is_registered():
    assert COMMANDS == ["adapt", "compare", "export-images", "fit-scope", "monitor", "nightly", "promote", "rollback",
                        "score", "train", "ui", "validate", "labels add", "labels show", "models list"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_and_is_in_the_readme(command):
    result = CliRunner().invoke(app, [*command.split(), "--help"])
    assert result.exit_code == 0
    assert "Example:" in result.output
    assert f"pneumo-batch {command}" in README


@pytest.mark.parametrize("command", [*COMMANDS, None])
def test_help_names_every_value_in_words(command):
    """No typer placeholders: ``{INPUT}`` in the usage line, ``<bool>`` beside a flag, ``<path>``, ``<int range>``."""
    result = CliRunner().invoke(app, [*command.split(), "--help"] if command else ["--help"], terminal_width=200)
    assert result.exit_code == 0
    assert re.findall(r"[{}]|<[a-z][a-z |]*>", result.output) == []


@pytest.mark.parametrize("code", list(ExitCode))
def test_every_exit_code_is_in_the_manual(code):
    assert f"| {int(code)} |" in EXIT_CODES_PAGE


def _options(command, path: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """(command, option) for every option of every command (typer's click objects, walked by their attributes)."""
    if hasattr(command, "commands"):
        return [found for name, sub in command.commands.items() for found in _options(sub, (*path, name))]
    return [(" ".join(path), name) for param in command.params if param.param_type_name == "option"
            for name in (*param.opts, *param.secondary_opts) if name.startswith("--") and name != "--help"]


@pytest.mark.parametrize(("command", "option"), _options(typer.main.get_command(app)))
def test_every_option_is_in_the_manual(command, option):
    assert option in MANUAL, f"pneumo-batch {command} {option} is in no page of docs/ nor in the README"


def test_the_readme_fits_a_screen():
    assert len(README.splitlines()) <= README_MAX_LINES


def test_the_manual_builds_strictly(tmp_path):
    """Broken links, missing pages and pages left out of the navigation fail ``mkdocs build --strict``."""
    completed = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "-d", str(tmp_path / "site")],
                               cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    reference = (tmp_path / "site" / "cli" / "index.html").read_text()
    assert all(f"pneumo-batch {command}" in reference for command in COMMANDS)  # generated from the app


def test_the_readmes_example_commands_run(tmp_path, dataset_path, shipped_default_model):
    """The README's export-images and score examples, as printed, on real images (paths moved into tmp_path)."""
    examples = sorted((line for line in README.splitlines()
                       if line.startswith(("pneumo-batch export-images", "pneumo-batch score /"))), key=lambda line: "score" in line)
    assert len(examples) == 2
    for line in examples:
        words = line.replace("demo/", f"{tmp_path}/demo/").replace("/data/incoming", f"{tmp_path}/demo/images")
        words = words.replace("/data/", f"{tmp_path}/").split()[1:]
        extra = ["--data", str(dataset_path)] if words[0] == "export-images" else ["--workers", "1"]
        result = CliRunner().invoke(app, [*words, *extra])
        assert result.exit_code == 0, (line, result.output)
    assert len(list((tmp_path / "demo" / "images").rglob("*.png"))) == 624


def test_scoring_imports_neither_tensorflow_nor_evidently():
    code = (
        "import sys, pneumo_batch.cli.app, pneumo_batch.scoring, pneumo_batch.nightly;"
        "sys.exit(sorted(m for m in ('tensorflow', 'keras', 'ray') if m in sys.modules) or 0)"
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr


def test_version_flag():
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.startswith("pneumo-batch ")
