"""Validation errors in words: a pydantic error turned into one line that names the node, edge
or field (by name, not list index), the YAML line where known, and the fix."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ValidationError

from pcgraph.yamlio import bool_hint

__all__ = ["format_validation_error"]


def _locate(loc: Iterable[Any], data: Any) -> str:
    """Turn a pydantic location like ('nodes', 2, 'shape') into 'nodes[2] (h1).shape'."""
    parts: list[str] = []
    cursor = data
    for item in loc:
        if isinstance(item, int):
            label = f"[{item}]"
            try:
                cursor = cursor[item]
                if isinstance(cursor, dict):
                    if "name" in cursor:
                        label += f" ({cursor['name']})"
                    elif "source" in cursor:
                        label += f" ({cursor.get('source')}→{cursor.get('target')})"
            except (IndexError, KeyError, TypeError):
                cursor = None
            parts.append(label)
        else:
            parts.append(("." if parts else "") + str(item))
            cursor = cursor.get(item) if isinstance(cursor, dict) else None
    return "".join(parts)


def _schema_model(title: str, loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The schema model an unknown field was found in, for the list of valid fields."""
    from pcgraph.schema.spec import EdgeSpec, GraphSpec, NodeSpec  # they import this module

    models: dict[str, type[BaseModel]] = {"nodes": NodeSpec, "edges": EdgeSpec}
    if title == "GraphSpec":
        return models.get(str(loc[0]), GraphSpec) if len(loc) > 1 else GraphSpec
    named: dict[str, type[BaseModel]] = {"NodeSpec": NodeSpec, "EdgeSpec": EdgeSpec}
    return named.get(title)


_EDGE_MSG = re.compile(r"^edge (.+?)→(.+?)[: (]")
_NODE_MSG = re.compile(r"^(?:output )?node '([^']+)'")


def _graph_loc(msg: str, data: Any) -> tuple[Any, ...]:
    """The location a graph-level message (loc ``()``) is about: the first edge or node it
    names, found in the raw data (``edge a→b: …``, ``node 'h' …``)."""
    if not isinstance(data, dict):
        return ()
    m = _EDGE_MSG.match(msg)
    n = None if m else _NODE_MSG.match(msg)
    key = "edges" if m else "nodes"
    items = data.get(key)
    if not isinstance(items, list):
        return ()
    found: tuple[Any, ...] = ()
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            continue
        if (m and (str(item.get("source")), str(item.get("target"))) == m.groups()) or (
            n and str(item.get("name")) == n.group(1)
        ):
            found = (key, i)
            if "declared twice" not in msg:  # a repeat is reported where it repeats
                break
    return found


def _kind(value: Any) -> str:
    """``null``, or the YAML kind and a short repr of a value, for type errors."""
    if value is None:
        return "null (nothing)"
    kind = {str: "a string", int: "a number", float: "a number", bool: "a boolean"}.get(
        type(value), f"a {type(value).__name__}"
    )
    text = repr(value)
    return f"{kind} {text if len(text) <= 40 else text[:37] + '...'}"


def _line(loc: tuple[Any, ...], lines: dict[tuple[object, ...], int] | None) -> str:
    """``line N: `` of the deepest recorded prefix of ``loc`` (empty without lines)."""
    if not lines:
        return ""
    path = tuple(loc)
    while path:
        found = lines.get(path)
        if found is not None:
            return f"line {found}: "
        path = path[:-1]
    return ""


def format_validation_error(
    exc: ValidationError, data: Any = None, lines: dict[tuple[object, ...], int] | None = None
) -> str:
    """One readable sentence per pydantic error, each naming the field it concerns (and its
    line, when ``lines`` maps paths to lines)."""
    messages = []
    for err in exc.errors():
        where = _locate(err["loc"], data) if data is not None else ".".join(map(str, err["loc"]))
        msg = str(err["msg"]).removeprefix("Value error, ")
        line = _line(tuple(err["loc"]) or _graph_loc(msg, data), lines)
        if err["type"] == "extra_forbidden":
            msg = "unknown field; remove it or check its spelling"
            model = _schema_model(exc.title, err["loc"])
            # other models (an op's parameters) are listed by the caller, which knows them
            if model is not None:
                msg += f" (valid fields: {', '.join(model.model_fields)})"
        elif err["type"] == "missing":
            msg = "required field is missing"
        elif err["type"] in ("tuple_type", "list_type"):
            msg = f"must be a list, got {_kind(err.get('input'))}"
        elif err["type"] in ("dict_type", "model_type", "model_attributes_type"):
            what = {"nodes": "{name: h, shape: 3}", "edges": "{source: a, target: b}"}.get(
                str(err["loc"][0]) if err["loc"] else "", "key: value"
            )
            msg = f"must be a mapping like {what}, got {_kind(err.get('input'))}"
        elif err["type"] == "string_type":
            msg = f"must be a string, got {_kind(err.get('input'))}" + bool_hint(err.get("input"))
        messages.append(f"{line}{where}: {msg}" if where else f"{line}{msg}")
    return "; ".join(messages)
