"""Reading the TOML files users write (nightly config, scope rules), with one-line errors."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from pneumo_batch.errors import InputError


def read_toml(path: Path, what: str) -> dict[str, Any]:
    """The parsed TOML at ``path``; ``what`` names the file in errors ("config", "scope rules").

    Raises :class:`InputError` when the file cannot be read or is not valid TOML.
    """
    try:
        return tomllib.loads(path.read_text())
    except OSError as error:
        raise InputError(f"cannot read {what} {path}: {error.strerror or error}") from None
    except tomllib.TOMLDecodeError as error:
        raise InputError(f"{what} {path} is not valid TOML: {error}") from None
