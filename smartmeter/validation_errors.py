"""One formatter for pydantic validation errors: settings files, meter profiles and request bodies (HTTP, MQTT).

``describe(exc)`` turns a ``ValidationError`` into one line naming the field, what is wrong and (cut to
``MAX_SHOWN`` characters) the value that was given, plus how many more errors there are:
``readings[3].contatore: Input should be a finite number, got 1000000000000000000000000...`` or, for a YAML
file, ``x.yaml:9: meters.1.max_powr_w: unknown key``. ``yaml_line`` finds the line of an error location in a
YAML node tree, so the settings and the profile loaders both name the line.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import yaml
from pydantic import ValidationError

MAX_SHOWN = 40  # characters of a bad value shown in a message; a 5,000-digit number must not fill a log


def short(value: Any, limit: int = MAX_SHOWN) -> str:
    """A JSON-ish rendering of ``value`` cut to ``limit`` characters (``...`` marks the cut)."""
    try:
        text = json.dumps(value, default=str)
    except (ValueError, TypeError, RecursionError):
        text = repr(value) if not isinstance(value, int) or value.bit_length() < 4000 else "<huge integer>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def loc_text(loc: Sequence[Any], root: str = "") -> str:
    """An error location as a path: ``meters.1.id`` (no root) or ``readings[1].contatore`` (root ``readings``)."""
    out = root
    for part in loc:
        if isinstance(part, int) and root:
            out += f"[{part}]"
        else:
            name = str(part) if len(str(part)) <= MAX_SHOWN else str(part)[: MAX_SHOWN - 3] + "..."
            out += f".{name}" if out else name
    return out or "(root)"


_PLAIN = {"missing": "missing", "extra_forbidden": "unknown key", "float_type": "must be a number",
          "int_type": "must be a whole number", "string_type": "must be a string",
          "bool_type": "must be true or false", "finite_number": "must be a finite number",
          "model_type": "must be an object", "dict_type": "must be an object", "list_type": "must be a list",
          "model_attributes_type": "must be an object"}
_BOUNDS = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}


def _message(err: Any) -> str:
    kind = err["type"]
    if kind in ("missing", "extra_forbidden"):
        return _PLAIN[kind]
    if kind == "value_error":  # our own validators: their message already shows the value
        return str(err.get("ctx", {}).get("error", err["msg"]))
    if kind in _BOUNDS:
        limit = next(iter(err.get("ctx", {}).values()), "?")
        msg = f"must be {_BOUNDS[kind]} {limit:g}" if isinstance(limit, float) else f"must be {_BOUNDS[kind]} {limit}"
    else:
        msg = _PLAIN.get(kind, str(err["msg"]))
    return f"{msg}, got {short(err['input'])}" if "input" in err and kind != "json_invalid" else msg


def describe(exc: ValidationError, root: str = "", where: str = "", node: yaml.Node | None = None,
             skip: int = 0) -> str:
    """One line for the first error of ``exc``: ``[where[:line]: ]path: message[, got value][ (and N more)]``.

    ``node`` (a composed YAML document) adds the line of the error to ``where``; ``skip`` drops that many leading
    location parts (a union member's name, for instance) before the path is written.
    """
    errors = exc.errors()
    err = errors[0]
    loc = tuple(err["loc"])[skip:]
    prefix = ""
    if where:
        line = yaml_line(node, loc) if node is not None else None
        prefix = f"{where}:{line}: " if line is not None else f"{where}: "
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{prefix}{loc_text(loc, root)}: {_message(err)}{more}"


def yaml_line(node: yaml.Node | None, loc: Sequence[Any]) -> int | None:
    """Follow a pydantic error location through the YAML node tree; return the 1-based line."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.value == part:
                    line, node = key.start_mark.line + 1, value
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line
