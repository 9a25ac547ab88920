"""Help texts in words: the command class every ``pneumo-batch`` command uses.

typer 0.29 labels each value with its type in angle brackets (``<bool>``
beside a flag that takes no value, ``<path>``, ``<int range>``) and shows a
required argument as ``{INPUT}`` in the usage line; readers take those for
something to type. :class:`WordsCommand` shows a flag with no label, an
option with its ``metavar`` (else a word for its type: N, NUMBER, PATH,
TEXT, or its choices), and an argument by its name (``INPUT``, ``[INPUT]``
when optional, ``INPUT...`` when repeated).
"""

from __future__ import annotations

from typing import Any

from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption


class WordsCommand(TyperCommand):
    def get_params(self, ctx: Any) -> list[Any]:
        return in_words(super().get_params(ctx), ctx)  # includes --help, which click adds here


class WordsGroup(TyperGroup):
    """The application itself (``pneumo-batch --help``), worded the same way."""

    def get_params(self, ctx: Any) -> list[Any]:
        return in_words(super().get_params(ctx), ctx)


def in_words(params: list[Any], ctx: Any) -> list[Any]:
    for param in params:
        if isinstance(param, TyperArgument):
            # typer has no hook for an argument's labels: give this one the subclass that words them
            param.__class__ = _WordsArgument
        elif isinstance(param, TyperOption) and param.metavar is None:
            param.metavar = "" if param.is_flag or param.count else type_word(param, ctx)
    return params


class _WordsArgument(TyperArgument):
    def display_type_rich(self, ctx: Any) -> str | None:
        return None  # the name says what to give

    def _usage_display_name(self) -> str:
        name = self.display_name_raw
        name = name if self.required else f"[{name}]"
        return name + ("..." if self.nargs != 1 else "")


_WORDS = {"int": "N", "int range": "N", "float": "NUMBER", "float range": "NUMBER", "str": "TEXT"}


def type_word(param: TyperOption, ctx: Any) -> str:
    """A word for the value of ``param`` (choices as ``a|b``), from typer's ``<type>`` label."""
    label = param.display_type(ctx).strip("<>")
    if label in ("path", "file", "directory", "dir"):
        return "PATH"
    return _WORDS.get(label, label.upper() if "|" not in label else label)
