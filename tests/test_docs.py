"""The CLI documents itself, the README documents the CLI, and light paths stay light."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pneumo_batch.cli.app import app
from pneumo_batch.cli.common import ExitCode

README = (Path(__file__).parent.parent / "README.md").read_text()
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
def test_every_exit_code_is_in_the_readme(code):
    assert f"| {int(code)} |" in README


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
