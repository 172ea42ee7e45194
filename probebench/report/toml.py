"""TOML text of a plain mapping (the suite as resolved), for people to read.

The standard library reads TOML (``tomllib``) but does not write it. This
writes the subset a resolved suite holds: strings, numbers, booleans, lists
of those, nested tables and arrays of tables. ``None`` has no TOML form: such
keys are left out (``tomllib.loads(dumps(d))`` equals ``d`` without them).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _key(key: Any) -> str:
    text = str(key)
    return text if _BARE_KEY.match(text) else json.dumps(text)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a JSON string is a TOML basic string
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value if v is not None) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items() if v is not None) + " }"
    return json.dumps(str(value))


def _is_table_array(value: Any) -> bool:
    return isinstance(value, list | tuple) and bool(value) and all(isinstance(v, Mapping) for v in value)


def _table(data: Mapping[str, Any], path: list[str], out: list[str]) -> None:
    plain = [(k, v) for k, v in data.items() if v is not None and not isinstance(v, Mapping) and not _is_table_array(v)]
    if path and (plain or not data):
        out.append(f"\n[{'.'.join(map(_key, path))}]")
    out.extend(f"{_key(k)} = {_value(v)}" for k, v in plain)
    for key, value in data.items():
        if isinstance(value, Mapping):
            _table(value, [*path, str(key)], out)
        elif _is_table_array(value):
            for item in value:
                out.append(f"\n[[{'.'.join(map(_key, [*path, str(key)]))}]]")
                _table_body(item, [*path, str(key)], out)


def _table_body(item: Mapping[str, Any], path: list[str], out: list[str]) -> None:
    """The keys of one ``[[array]]`` element; its sub-tables go under the array's path."""
    nested = {k: v for k, v in item.items() if isinstance(v, Mapping) or _is_table_array(v)}
    out.extend(f"{_key(k)} = {_value(v)}" for k, v in item.items() if v is not None and k not in nested)
    for key, value in nested.items():
        # a sub-table of an array element cannot be written as [path.key] after other elements; inline it
        out.append(f"{_key(key)} = {_value(value) if isinstance(value, Mapping) else _value(list(value))}")


def dumps(data: Mapping[str, Any]) -> str:
    """``data`` as a TOML document."""
    out: list[str] = []
    _table(data, [], out)
    return "\n".join(out).lstrip("\n") + "\n"
