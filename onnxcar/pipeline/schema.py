"""Typed reading of a recipe's TOML tables: unknown keys and wrong types are errors that name the key."""

import math
from collections.abc import Callable
from typing import Any

from onnxcar.errors import OnnxcarError


class RecipeError(OnnxcarError):
    """A recipe that cannot run: the message names the file and the key."""


def _number(value) -> bool:
    """A finite int or float: TOML's nan and inf are no limit, rate or ratio."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _integer(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _strings(value) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _numbers(value) -> bool:
    return isinstance(value, list) and bool(value) and all(_number(v) for v in value)


# option type name -> (check, description for messages)
TYPES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "str": (lambda v: isinstance(v, str), "a string"),
    "int": (_integer, "an integer"),
    "float": (_number, "a finite number"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "strs": (lambda v: isinstance(v, str) or _strings(v), "a list of strings"),
    "floats": (_numbers, "a list of finite numbers"),
    "values": (lambda v: isinstance(v, str) or _number(v), 'a finite number, or per layer or kind as "conv1=0.7,fc=0.9"'),
    "sizes": (lambda v: isinstance(v, list) and bool(v) and all(_integer(x) and x > 0 for x in v),
              "a list of positive integers"),
}


def take(table: Any, where: str, options: dict[str, str], source: str) -> dict:
    """The entries of ``table`` checked against ``options`` (key -> type name); ``where`` names the table."""
    if not isinstance(table, dict):
        raise RecipeError(f"{source}: {where} must be a table")
    unknown = sorted(set(table) - set(options))
    if unknown:
        raise RecipeError(f"{source}: {where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(options))})")
    for key, value in table.items():
        check, what = TYPES[options[key]]
        if not check(value):
            raise RecipeError(f"{source}: {where}.{key} must be {what}, got {value!r}")
    values = dict(table)
    for key, value in values.items():
        if options[key] == "strs" and isinstance(value, str):
            values[key] = [v.strip() for v in value.split(",") if v.strip()]
        if options[key] in ("strs", "floats", "sizes"):
            values[key] = tuple(values[key])
    return values


def refine(source: str, where: str, build: Callable[[], Any]):
    """Runs ``build``; an OnnxcarError it raises is re-raised naming the recipe and the table."""
    try:
        return build()
    except RecipeError:
        raise
    except OnnxcarError as err:
        raise RecipeError(f"{source}: {where}: {err}") from err
