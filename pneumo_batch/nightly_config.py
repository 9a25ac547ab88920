"""The nightly job's TOML config: keys that mirror ``pneumo-batch nightly``'s options, checked before any work."""

from __future__ import annotations

from dataclasses import fields
from datetime import date as Date
from pathlib import Path
from typing import Any

from pneumo_batch.errors import InputError
from pneumo_batch.inputs.pacs import pacs_options
from pneumo_batch.nightly import NightlyOptions
from pneumo_batch.pacs.location import is_pacs_url
from pneumo_batch.toml_files import read_toml

CONFIG_KEYS = {f.name for f in fields(NightlyOptions)} | {"quiet"}
_PATH_KEYS = ("input", "output_root", "model", "root", "workspace", "metrics_dir", "scope_rules")
#: The TOML types a key accepts (a bool is not an integer here, though Python says it is).
_CONFIG_TYPES: dict[str, tuple[type, ...]] = {
    "workers": (int,), "batch_size": (int,), "quiet": (bool,), "date": (str, Date), "engine": (str,), "ray_address": (str,), "group": (str,),
    **{key: (str,) for key in _PATH_KEYS},
}
_TOML_NAMES: dict[type, str] = {
    str: "a string", int: "an integer", bool: "true or false", float: "a number", list: "an array", dict: "a table",
}


def load_config(path: Path) -> dict[str, Any]:
    """Read a TOML config whose keys mirror the options; relative paths are relative to the file."""
    raw = read_toml(path, "config")
    config = {key.replace("-", "_"): value for key, value in raw.items()}
    unknown = sorted(set(config) - CONFIG_KEYS)
    if unknown:
        raise InputError(f"config {path}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(CONFIG_KEYS))}")
    section = config.get("pacs")
    if section is not None:
        if not isinstance(section, dict):
            raise InputError(f"config {path}: pacs must be a [pacs] table")
        for key in ("auth_file", "ca_bundle"):
            if key in section:
                section[key] = (path.parent / Path(str(section[key])).expanduser()).resolve()
        if "url" in section:
            config.setdefault("input", section["url"])
    for key, value in config.items():
        expected = _CONFIG_TYPES.get(key)
        if expected and (not isinstance(value, expected) or (isinstance(value, bool) and bool not in expected)):
            names = " or ".join("a date" if kind is Date else _TOML_NAMES[kind] for kind in expected)
            raise InputError(f"config {path}: {key} must be {names}, not {_TOML_NAMES.get(type(value), type(value).__name__)} {value!r}")
    for key in _PATH_KEYS:
        if key in config and not (key == "input" and is_pacs_url(str(config[key]))):
            config[key] = (path.parent / Path(str(config[key])).expanduser()).resolve()
    if "date" in config:
        config["date"] = parse_date(str(config["date"]))
    if "engine" in config:
        config["engine"] = str(config["engine"])  # checked by NightlyOptions
    return config


def resolve_pacs(settings: dict[str, Any], *, study_date: str | None, send_results: bool | None) -> None:
    """Turn a ``[pacs]`` section and the PACS options into ``settings["pacs"]`` for a PACS input.

    The study dates default to the night's date (``settings["date"]``).
    """
    section = settings.pop("pacs", None)
    if not is_pacs_url(str(settings.get("input", ""))):
        if section is not None or study_date is not None or send_results:
            raise InputError("the [pacs] section, --study-date and --send-results need a dicomweb+http(s):// input")
        return
    section = dict(section or {})
    section.pop("url", None)
    settings["pacs"] = pacs_options(
        section, study_date=study_date, send_results=send_results,
        default_study_date=settings["date"].strftime("%Y%m%d"),
    )


def parse_date(text: str) -> Date:
    try:
        return Date.fromisoformat(text)
    except ValueError:
        raise InputError(f"date must be YYYY-MM-DD, got {text!r}") from None
